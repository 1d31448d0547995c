package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/server"
)

// TestBuildIsolatedForPrebuilt: plugind build builds the executables of
// plugins configured to run in a process (isolation "process": the
// executable alone; "auto": the .so and the executable), and a server
// in prebuilt mode with the same configuration serves the isolated
// plugin from its executable, in a process of its own, and the auto one
// in-process, with no go on PATH and a go command that must never run;
// it writes nothing in the cache. An isolated plugin plugind build did
// not build is logged at start and answered 503 naming the command that
// builds it, as plugind doctor reports.
func TestBuildIsolatedForPrebuilt(t *testing.T) {
	pp := plugintest.PluginPath(t, "crashy")
	src := filepath.Join(pp, "src")
	plugintest.WriteFile(t, src, "autohi.go", plugintest.Unique(t, "package main\n\nfunc GETHiHandler() string { return \"auto hi\" }\n"))
	plugintest.WriteFile(t, src, "unbuilt.go", plugintest.Unique(t, "package main\n\nfunc GETHiHandler() string { return \"hi\" }\n"))
	conf := filepath.Join(pp, "prest.toml")
	plugintest.WriteFile(t, pp, "prest.toml", `
[plugin.crashy]
isolation = "process"

[plugin.autohi]
isolation = "auto"

[plugin.unbuilt]
isolation = "process"

[plugin.oldso]
isolation = "auto"
`)
	cache := t.TempDir() // what is in it, this test built
	environ := []string{"PREST_CONF=" + conf, "PREST_PLUGINPATH=" + pp, "PREST_PLUGINS_CACHEDIR=" + cache,
		"PREST_PLUGINS_LOADCHECKTIMEOUT=0", "PREST_PLUGINS_WARMUP=false", "PREST_TASKS_DIR=" + t.TempDir(),
		"PREST_PLUGINS_BUILDWAIT=" + plugintest.BuildWait.String(), "PREST_HTTP_WRITETIMEOUT=" + plugintest.WriteTimeout.String()}

	var out, errs bytes.Buffer
	if code := Main(t.Context(), []string{"build", "crashy", "autohi"}, environ, &out, &errs); code != 0 {
		t.Fatalf("plugind build: exit %d\n%s\n%s", code, out.String(), errs.String())
	}
	t.Logf("plugind build:\n%s", out.String())
	for _, want := range []string{"crashy (process)     built ", "autohi               built ", "autohi (process)     built "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plugind build printed no line %q", want)
		}
	}
	if strings.Contains(out.String(), "crashy               ") {
		t.Error("plugind build built the .so of a plugin that only runs in a process")
	}
	// prestd's NAME.so, without source, in "auto": it can only run
	// in-process, so plugind build checks the .so alone.
	sos, err := filepath.Glob(filepath.Join(cache, "*.so"))
	if err != nil || len(sos) != 1 {
		t.Fatalf("artifacts in the cache: %v, %v; want autohi's", sos, err)
	}
	data, err := os.ReadFile(sos[0])
	if err != nil {
		t.Fatal(err)
	}
	plugintest.WriteFile(t, pp, "oldso.so", string(data))
	out.Reset()
	if code := Main(t.Context(), []string{"build", "oldso"}, environ, &out, &errs); code != 0 || strings.Contains(out.String(), "(process)") {
		t.Errorf("plugind build of a .so without source in auto: exit %d\n%s\n%s", code, out.String(), errs.String())
	}

	// Prebuilt mode: no go on PATH, and plugins.go a command that leaves
	// a mark if it ever runs.
	t.Setenv("PATH", t.TempDir())
	mark := filepath.Join(t.TempDir(), "go-ran")
	fakeGo := filepath.Join(t.TempDir(), "go")
	plugintest.WriteFile(t, filepath.Dir(fakeGo), "go", "#!/bin/sh\necho \"$@\" >> "+mark+"\nexit 1\n")
	if err := os.Chmod(fakeGo, 0o755); err != nil {
		t.Fatal(err)
	}
	prebuilt := append(environ, "PREST_PLUGINS_BUILD=off", "PREST_PLUGINS_GO="+fakeGo, "PREST_HTTP_HOST=127.0.0.1")
	before := plugintest.Tree(t, cache)
	url, logs := serve(t, prebuilt)

	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"/_PLUGIN/crashy/Ok", 200, "ok "},
		{"/_PLUGIN/autohi/Hi", 200, "auto hi"},
		{"/_PLUGIN/unbuilt/Hi", 503, "run `plugind build unbuilt`"},
		{"/_PLUGIN/unbuilt/Hi", 503, "run `plugind build unbuilt`"}, // not remembered as a failure
	}
	for _, tt := range tests {
		status, body := httpGet(t, url+tt.path)
		if status != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s = %d %s; want %d with %q", tt.path, status, body, tt.status, tt.want)
		}
		if tt.path == "/_PLUGIN/crashy/Ok" {
			if pid, err := strconv.Atoi(strings.TrimPrefix(body, "ok ")); err != nil || pid == os.Getpid() {
				t.Errorf("crashy answered %q; want ok from a process of its own", body)
			}
		}
	}
	if ev := logs.Events(map[string]any{"plugin": "unbuilt", "level": "error", "message": "isolated plugin is not built; its calls fail until plugind build builds it"}); len(ev) != 1 ||
		!strings.Contains(fmt.Sprint(ev[0]["error"]), "run `plugind build unbuilt`") {
		t.Errorf("the start did not log the unbuilt isolated plugin once, naming plugind build: %v\n%s", ev, logs)
	}
	for _, name := range []string{"crashy", "autohi"} {
		if ev := logs.Events(map[string]any{"plugin": name, "message": "isolated plugin is not built; its calls fail until plugind build builds it"}); len(ev) > 0 {
			t.Errorf("built plugin %s logged as not built: %v", name, ev)
		}
	}

	out.Reset()
	code := Main(t.Context(), []string{"doctor"}, prebuilt, &out, io.Discard)
	problems := linesWith(out.String(), "PROBLEM")
	if code == 0 || len(problems) != 1 || !strings.Contains(problems[0], "plugin unbuilt has no executable to run in a process for its source: run plugind build unbuilt") {
		t.Errorf("doctor in prebuilt mode (exit %d); want one problem, unbuilt's executable:\n%s", code, out.String())
	}

	if data, err := os.ReadFile(mark); err == nil {
		t.Errorf("prebuilt mode ran the go command: %s", data)
	}
	if after := plugintest.Tree(t, cache); after != before {
		t.Errorf("prebuilt mode wrote into the cache:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestBuildAutoConflictForPrebuilt: with isolation = "auto", plugind
// build keeps only the executable of a plugin whose .so needs another
// version of a module than a plugin built before it, and exits 0; a
// prebuilt-mode server, where that plugin has no .so, runs it in a
// process from that executable, with the version its go.mod asks for,
// and the other in-process; the log says why it moved.
func TestBuildAutoConflictForPrebuilt(t *testing.T) {
	if !plugintest.OwnProcess(t) {
		return // greet v1.0.0 and v1.1.0 cannot meet in one process
	}
	_, env := plugintest.ModuleProxy(t)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	lib := filepath.Join(t.TempDir(), "lib")
	plugintest.CopyTree(t, "deps/lib-greet", lib)                          // greet: example.com/greet v1.0.0
	plugintest.CopyTree(t, "deps/shop", filepath.Join(lib, "src", "shop")) // shop: v1.1.0
	conf := filepath.Join(t.TempDir(), "prest.toml")
	plugintest.WriteFile(t, filepath.Dir(conf), "prest.toml", "[plugins]\nisolation = \"auto\"\n")
	environ := []string{"PREST_CONF=" + conf, "PREST_PLUGINPATH=" + lib, "PREST_PLUGINS_CACHEDIR=" + t.TempDir(),
		"PREST_PLUGINS_LOADCHECKTIMEOUT=0", "PREST_PLUGINS_WARMUP=false", "PREST_TASKS_DIR=" + t.TempDir(),
		"PREST_PLUGINS_BUILDWAIT=" + plugintest.BuildWait.String(), "PREST_HTTP_WRITETIMEOUT=" + plugintest.WriteTimeout.String()}

	var out, errs bytes.Buffer
	if code := Main(t.Context(), []string{"build", "greet", "shop"}, environ, &out, &errs); code != 0 {
		t.Fatalf("plugind build: exit %d\n%s\n%s", code, out.String(), errs.String())
	}
	t.Logf("plugind build:\n%s", out.String())
	for _, want := range []string{"greet                built ", "greet (process)      built ", "shop                 process cannot load in-process", "shop (process)       built "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plugind build printed no line %q", want)
		}
	}

	t.Setenv("PATH", t.TempDir()) // no go
	url, logs := serve(t, append(environ, "PREST_PLUGINS_BUILD=off", "PREST_PLUGINS_GO=/nonexistent/go", "PREST_HTTP_HOST=127.0.0.1"))
	for _, tt := range []struct{ path, want string }{
		{"/_PLUGIN/greet/Hello", "greet v1.0.0"},
		{"/_PLUGIN/shop/Hello", "greet v1.1.0"},
		{"/_PLUGIN/greet/Hello", "greet v1.0.0"},
	} {
		if status, body := httpGet(t, url+tt.path); status != http.StatusOK || body != tt.want {
			t.Errorf("GET %s = %d %s; want 200 %s\n%s", tt.path, status, body, tt.want, logs)
		}
	}
	moved := logs.Events(map[string]any{"plugin": "shop", "message": "plugin has no in-process artifact but plugind build made its executable; isolation is auto: it runs in a process of its own"})
	if len(moved) != 1 {
		t.Errorf("the move to a process was not logged once: %v\n%s", moved, logs)
	}
}

// serve starts a server with environ on loopback until the test ends and
// returns its URL once it is ready, and its log.
func serve(t *testing.T, environ []string) (string, *plugintest.Log) {
	t.Helper()
	cfg, err := config.Load(nil, environ)
	if err != nil {
		t.Fatal(err)
	}
	logs := &plugintest.Log{}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, cfg, zerolog.New(logs))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	url := "http://" + ln.Addr().String()
	for deadline := time.Now().Add(time.Minute); ; {
		if status, _ := httpGet(t, url+"/readyz"); status == http.StatusOK {
			return url, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready within a minute:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a bound
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	a := plugintest.Get(t, url)
	return a.Status, a.Body
}

// linesWith are the lines of s that begin with prefix.
func linesWith(s, prefix string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return out
}
