package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/server"
	"github.com/plugind/plugind/tasks"
)

// settle waits, with a bound, for the goroutine count to come back to
// at most n: what a server started, it must end.
func settle(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reopen checks that the task store in dir was closed: bbolt locks it
// while open, and Open gives up on a lock after its timeout.
func reopen(t *testing.T, dir string) {
	t.Helper()
	m, err := tasks.Open(tasks.Options{Dir: dir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatalf("the task store is still open: %v", err)
	}
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestFailedStartReleasesEverything starts servers that fail, in New and
// when listening, and checks that each released all it had acquired.
func TestFailedStartReleasesEverything(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name string
		toml string
		set  func(*config.Config)
		// newErr: New fails with it; else ListenAndServe does, with listenErr.
		newErr, listenErr string
	}{
		{
			name:      "port in use",
			set:       func(c *config.Config) { c.HTTP.Port = busyPort },
			listenErr: fmt.Sprintf("127.0.0.1:%d", busyPort),
		},
		{
			name:   "certificate missing",
			toml:   "[https]\nmode = true\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
			newErr: "https.cert/https.key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "closed")
			// A copy of the hooks fixture of its own: plugins stay loaded
			// for the test binary's life, with their globals (TestHooks
			// counts Init calls).
			dir := plugintest.PluginPath(t)
			hooks, err := os.ReadFile(filepath.Join(plugintest.Root(), "testdata", "plugins", "hooks.go"))
			if err != nil {
				t.Fatal(err)
			}
			plugintest.WriteFile(t, filepath.Join(dir, "src"), "hooks.go", plugintest.Own(t, string(hooks)))
			cfg := loadConfig(t, dir, tt.toml+fmt.Sprintf("\n[plugin.hooks.settings]\nclose_marker = %q\n", marker))
			if tt.set != nil {
				tt.set(&cfg)
			}
			before := runtime.NumGoroutine()
			logs := &plugintest.Log{}
			s, err := server.New(context.Background(), cfg, zerolog.New(logs))
			if tt.newErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.newErr) {
					t.Fatalf("New = %v, want an error naming %s", err, tt.newErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				// A loaded plugin: its Close hook must run.
				rec := httptest.NewRecorder()
				s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/_PLUGIN/hooks/State", nil))
				if rec.Code != 200 {
					t.Fatalf("hooks: %d %s", rec.Code, rec.Body)
				}
				err := s.ListenAndServe(context.Background())
				if err == nil || !strings.Contains(err.Error(), tt.listenErr) {
					t.Fatalf("ListenAndServe = %v, want an error naming %s", err, tt.listenErr)
				}
				if data, err := os.ReadFile(marker); err != nil || string(data) != "closed" {
					t.Errorf("the Close hook did not run: %q %v", data, err)
				}
			}
			reopen(t, cfg.Tasks.Dir)
			settle(t, before)
		})
	}
}

// heldGo returns a go command that holds the build cache warm-up until
// release is called (and at the end of the test): a warm-up that stays
// "running" as long as a test needs. A held warm-up is also slow to
// stop: a process it started keeps the build's output open, so the
// killed build returns only after exec's WaitDelay (5 s), as a build
// that takes its time to die would.
func heldGo(t *testing.T) (goCmd string, release func()) {
	t.Helper()
	dir := t.TempDir()
	released := filepath.Join(dir, "released")
	script := fmt.Sprintf(`#!/bin/sh
case "$*" in
*/warmup/warmup.go*)
	(while [ ! -e %[1]q ]; do sleep 0.05; done) &
	while [ ! -e %[1]q ]; do sleep 0.05; done ;;
esac
exec go "$@"
`, released)
	goCmd = filepath.Join(dir, "go")
	if err := os.WriteFile(goCmd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	release = func() {
		if err := os.WriteFile(released, nil, 0o644); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(release)
	return goCmd, release
}

// waitWarmUp polls /readyz until the warm-up is in state want.
func waitWarmUp(t *testing.T, srv *running, want string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got := srv.do(t, "GET", "/readyz", "")
		if got.status != 200 {
			t.Fatalf("readyz = %d during warm-up: %s", got.status, got.body)
		}
		if strings.Contains(got.body, `"warmup":"`+want+`"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up never %s: %s\n%s", want, got.body, srv.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShutdownStopsBackgroundWorkBeforeCloseHooks shuts a server down
// while its warm-up runs, and is slow to stop: the warm-up has ended
// before the plugins' Close hooks run.
func TestShutdownStopsBackgroundWorkBeforeCloseHooks(t *testing.T) {
	goCmd, _ := heldGo(t)
	srv := startWith(t, plugintest.PluginPath(t), func(c *config.Config) {
		c.Plugins.WarmUp = true
		c.Plugins.Go = goCmd
		c.Plugins.CacheDir = t.TempDir()
	})
	waitWarmUp(t, srv, "running")
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	warm, hooks := -1, -1
	for i, line := range srv.logs.Events(nil) {
		switch {
		case line["message"] == "build cache warm-up failed":
			warm = i
		case line["message"] == "releasing" && line["resource"] == "plugins":
			hooks = i
		}
	}
	if warm < 0 || hooks < 0 || warm > hooks {
		t.Errorf("want the warm-up stopped (log line %d) before the Close hooks ran (line %d): %s", warm, hooks, srv.logs)
	}
}
