package benchproc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeEnv makes the test binary a stand-in for plugind: it serves its
// environment at /env on PREST_HTTP_HOST:PREST_HTTP_PORT and exits 0 on
// SIGTERM.
const fakeEnv = "BENCHPROC_FAKE_SERVER=1"

func TestMain(m *testing.M) {
	if slices.Contains(os.Environ(), fakeEnv) {
		fakeServer()
		return
	}
	os.Exit(m.Run())
}

func fakeServer() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("PREST_HTTP_HOST"), os.Getenv("PREST_HTTP_PORT")))
	if err != nil {
		os.Exit(3)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/env" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(strings.Join(os.Environ(), "\n")))
	})}
	go func() { _ = srv.Serve(ln) }()
	<-ctx.Done()
	_ = srv.Close()
}

func TestServer(t *testing.T) {
	t.Setenv("PREST_STRAY", "1")
	t.Setenv("PORT", "1")
	dir := t.TempDir()
	if err := PluginDir(dir, map[string][]byte{"p.go": []byte("package main\n")}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"prest.toml", filepath.Join("src", "p.go")} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	ports, err := FreePorts(2)
	if err != nil || len(ports) != 2 || ports[0] == ports[1] {
		t.Fatalf("FreePorts(2) = %v, %v: want two distinct ports", ports, err)
	}
	s, err := Start(os.Args[0], dir, ports[0], filepath.Join(dir, "server.log"), fakeEnv, "PREST_EXTRA=1")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Kill()
		}
	}()

	var env []string
	err = s.Poll(t.Context(), 30*time.Second, 10*time.Millisecond, func(ctx context.Context) (bool, error) {
		resp, body, err := Get(ctx, http.DefaultClient, s.URL("/env"), "")
		if err != nil {
			return false, err
		} else if resp.StatusCode != http.StatusOK {
			return false, errors.New(resp.Status)
		}
		env = strings.Split(string(body), "\n")
		return true, nil
	})
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	final := errors.New("final")
	if err := s.Poll(t.Context(), 30*time.Second, 10*time.Millisecond, func(context.Context) (bool, error) {
		return true, final
	}); err != final {
		t.Errorf("Poll: %v, want try's final error", err)
	}
	for _, kv := range []string{"PREST_CONF=" + filepath.Join(dir, "prest.toml"), "PREST_PLUGINPATH=" + dir,
		"PREST_HTTP_HOST=127.0.0.1", "PREST_EXTRA=1"} {
		if !slices.Contains(env, kv) {
			t.Errorf("server environment lacks %s", kv)
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "PREST_STRAY=") || strings.HasPrefix(kv, "PORT=") {
			t.Errorf("server environment has %s", kv)
		}
	}

	if runtime.GOOS == "windows" {
		return // no SIGTERM: Stop kills, and says so
	}
	stopped = true
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err == nil || !strings.Contains(err.Error(), "exited before the end") {
		t.Errorf("second Stop: %v, want an exited-before error", err)
	}
	err = s.Poll(t.Context(), 30*time.Second, 10*time.Millisecond, func(context.Context) (bool, error) {
		return false, errors.New("not yet")
	})
	if err == nil || !strings.HasPrefix(err.Error(), "server exited") {
		t.Errorf("Poll after exit: %v, want server exited", err)
	}
}

func TestPrintTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(path, []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	PrintTail("prog", "x.log", path, 2)
	PrintTail("prog", "missing.log", path+".missing", 2)
	os.Stderr = stderr
	w.Close()
	out := make([]byte, 1024)
	n, _ := r.Read(out)
	if got, want := string(out[:n]), "prog: last 2 lines of x.log:\nb\nc\n"; got != want {
		t.Errorf("PrintTail printed %q, want %q", got, want)
	}
}
