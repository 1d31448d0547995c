package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// TestIsolatedPlugins: plugins configured isolation = "process" run in
// processes of their own beside in-process ones, are listed, survive a
// crash of their process, and are stopped (Close hook included) when the
// server stops.
func TestIsolatedPlugins(t *testing.T) {
	dir := plugintest.PluginPath(t, "crashy", "hooks", "hello")
	marker := filepath.Join(t.TempDir(), "closed")
	srv := startConfig(t, loadConfig(t, dir, `
[plugin.crashy]
isolation = "process"

[plugin.hooks]
isolation = "process"

[plugin.hooks.settings]
close_marker = "`+marker+`"
greeting = "hey"
`))
	ok := srv.do(t, "GET", "/_PLUGIN/crashy/Ok", "")
	pid, err := strconv.Atoi(strings.TrimPrefix(ok.body, "ok "))
	if ok.status != http.StatusOK || err != nil || pid == os.Getpid() {
		t.Fatalf("isolated call: %d %s; want ok from another process", ok.status, ok.body)
	}
	if a := srv.do(t, "GET", "/_PLUGIN/hooks/State", ""); a.status != http.StatusOK || !strings.Contains(a.body, `"greeting":"hey"`) || !strings.Contains(a.body, `"inits":1`) {
		t.Fatalf("isolated legacy plugin with hooks: %d %s", a.status, a.body)
	}
	if a := srv.do(t, "GET", "/_PLUGIN/hello/Hello", ""); a.status != http.StatusOK {
		t.Fatalf("in-process plugin beside isolated ones: %d %s", a.status, a.body)
	}
	if a := srv.do(t, "GET", "/_PLUGIN/crashy/Exit", ""); a.status != http.StatusBadGateway || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("crash: %d %s", a.status, a.body)
	}
	var list struct{ Plugins []loader.Info }
	if err := json.Unmarshal([]byte(srv.do(t, "GET", "/_PLUGINS", "").body), &list); err != nil {
		t.Fatal(err)
	}
	states := map[string]loader.State{}
	for _, i := range list.Plugins {
		states[i.Name] = i.State
	}
	if states["hooks"] != loader.StateReady || states["hello"] != loader.StateReady {
		t.Fatalf("listing states %v", states)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := srv.do(t, "GET", "/_PLUGIN/crashy/Ok", "")
		if a.status == http.StatusOK {
			pid, _ = strconv.Atoi(strings.TrimPrefix(a.body, "ok "))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the crashed plugin did not come back")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a bound
	}
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the isolated plugin's Close hook did not run at shutdown: %v", err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("process %d outlived the server", pid)
	}
}

// TestIsolatedPluginsNeedBuilds: prebuilt mode has no toolchain, so a
// plugin configured to run in a process whose executable plugind build
// did not make is logged at start and answered 503 naming the command
// that builds it; the server runs, and never runs the go command (here
// one that fails). See cli's TestBuildIsolatedForPrebuilt for a built one.
func TestIsolatedPluginsNeedBuilds(t *testing.T) {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "lone.go", plugintest.Unique(t, "package main\n\nfunc GETHiHandler() string { return \"hi\" }\n"))
	srv := startConfig(t, loadConfig(t, dir, `
[plugins]
build = "off"
go = "/nonexistent/go"

[tasks]
dir = "`+t.TempDir()+`"

[plugin.lone]
isolation = "process"
`))
	for range 2 { // not remembered as a failure
		if a := srv.do(t, "GET", "/_PLUGIN/lone/Hi", ""); a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "run `plugind build lone`") {
			t.Errorf("unbuilt isolated plugin: %d %s", a.status, a.body)
		}
	}
	logged := srv.logs.Events(map[string]any{"plugin": "lone", "level": "error", "message": "isolated plugin is not built; its calls fail until plugind build builds it"})
	if len(logged) != 1 || !strings.Contains(logged[0]["error"].(string), "run `plugind build lone`") {
		t.Errorf("the start did not log the unbuilt plugin once, naming plugind build: %v\n%s", logged, srv.logs)
	}
}

// TestAutoIsolationOnDependencyConflict: with isolation = "auto", a
// plugin that cannot load in-process because another plugin loaded
// another version of a module it needs runs in a process of its own,
// with the version its go.mod asks for; the log says why.
func TestAutoIsolationOnDependencyConflict(t *testing.T) {
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
	srv := startConfig(t, loadConfig(t, lib, `
[plugins]
isolation = "auto"
`))
	if a := srv.do(t, "GET", "/_PLUGIN/greet/Hello", ""); a.status != http.StatusOK || a.body != "greet v1.0.0" {
		t.Fatalf("greet: %d %s", a.status, a.body)
	}
	if a := srv.do(t, "GET", "/_PLUGIN/shop/Hello", ""); a.status != http.StatusOK || a.body != "greet v1.1.0" {
		t.Fatalf("shop, which cannot load beside greet: %d %s\n%s", a.status, a.body, srv.logs)
	}
	moved := srv.logs.Events(map[string]any{"plugin": "shop", "message": "plugin cannot load in-process because of its dependencies; isolation is auto: it runs in a process of its own"})
	if len(moved) != 1 || !strings.Contains(moved[0]["reason"].(string), `plugin "greet" loaded v1.0.0`) {
		t.Errorf("the move to a process was not logged once with its reason: %v", moved)
	}
	if a := srv.do(t, "GET", "/_PLUGIN/greet/Hello", ""); a.status != http.StatusOK || a.body != "greet v1.0.0" {
		t.Errorf("greet after shop moved: %d %s", a.status, a.body)
	}
}

// TestIsolatedPluginReloads: with plugins.reload = "on-change", a plugin
// that runs in a process is rebuilt and its process replaced when the
// watcher sees its source edited, and when lib/go.mod, which declares its
// requirements, bumps a dependency (as `go get example.com/greet@v1.1.0`
// does); every call meanwhile is answered, by the old version until the
// new one serves.
func TestIsolatedPluginReloads(t *testing.T) {
	proxy, env := plugintest.ModuleProxy(t)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	tests := []struct {
		name   string
		change func(t *testing.T, lib string)
		want   string
	}{
		{
			name: "source edited",
			change: func(t *testing.T, lib string) {
				src := filepath.Join(lib, "src")
				edited := strings.Replace(readFile(t, filepath.Join(src, "greet.go")), "io.WriteString(w, greet.Hello())", `io.WriteString(w, greet.Hello()+", edited")`, 1)
				plugintest.WriteFile(t, src, "greet.go", edited)
			},
			want: "greet v1.0.0, edited",
		},
		{
			name: "lib/go.mod bumped",
			change: func(t *testing.T, lib string) {
				plugintest.WriteFile(t, lib, "go.sum", readFile(t, filepath.Join(lib, "go.sum"))+plugintest.Sums(t, proxy, "example.com/greet v1.1.0"))
				plugintest.WriteFile(t, lib, "go.mod", strings.Replace(readFile(t, filepath.Join(lib, "go.mod")), "v1.0.0", "v1.1.0", 1))
			},
			want: "greet v1.1.0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lib := filepath.Join(t.TempDir(), "lib")
			plugintest.CopyTree(t, "deps/lib-greet", lib) // greet: example.com/greet v1.0.0
			srv := startConfig(t, loadConfig(t, lib, `
[plugins]
reload = "on-change"

[plugin.greet]
isolation = "process"
`))
			if a := srv.do(t, "GET", "/_PLUGIN/greet/Hello", ""); a.status != http.StatusOK || a.body != "greet v1.0.0" {
				t.Fatalf("before: %d %s", a.status, a.body)
			}
			tt.change(t, lib)
			// A build takes seconds; BuildWait bounds it on a loaded machine.
			for deadline := time.Now().Add(plugintest.BuildWait); ; {
				a := srv.do(t, "GET", "/_PLUGIN/greet/Hello", "")
				if a.status != http.StatusOK {
					t.Fatalf("during the reload: %d %s", a.status, a.body)
				}
				if a.body == tt.want {
					break
				}
				if a.body != "greet v1.0.0" || time.Now().After(deadline) {
					t.Fatalf("after the change: %q; want %q\n%s", a.body, tt.want, withoutRequests(srv.logs))
				}
				time.Sleep(50 * time.Millisecond) // polling a condition, with a bound
			}
			if n := len(srv.logs.Events(map[string]any{"plugin": "greet", "message": "isolated plugin reloaded"})); n == 0 {
				t.Errorf("no reload of greet logged:\n%s", withoutRequests(srv.logs))
			}
		})
	}
}

// withoutRequests is what logs holds but the lines of requests.
func withoutRequests(logs *plugintest.Log) string {
	var b strings.Builder
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, `"message":"request"`) {
			b.WriteString(line)
		}
	}
	return b.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestMovedPluginReloadsOnItsGoMod: an "auto" plugin that moved to a
// process (TestAutoIsolationOnDependencyConflict) reloads there when the
// go.mod of its folder changes.
func TestMovedPluginReloadsOnItsGoMod(t *testing.T) {
	if !plugintest.OwnProcess(t) {
		return // greet v1.0.0 and v1.1.0 cannot meet in one process
	}
	proxy, env := plugintest.ModuleProxy(t)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	lib := filepath.Join(t.TempDir(), "lib")
	plugintest.CopyTree(t, "deps/lib-greet", lib) // greet: example.com/greet v1.0.0
	shop := filepath.Join(lib, "src", "shop")
	plugintest.CopyTree(t, "deps/shop", shop) // shop: v1.1.0
	srv := startConfig(t, loadConfig(t, lib, `
[plugins]
isolation = "auto"
reload = "on-change"
`))
	if a := srv.do(t, "GET", "/_PLUGIN/greet/Hello", ""); a.status != http.StatusOK || a.body != "greet v1.0.0" {
		t.Fatalf("greet: %d %s", a.status, a.body)
	}
	first := srv.do(t, "GET", "/_PLUGIN/shop/Hello", "")
	if first.status != http.StatusOK || first.body != "greet v1.1.0" {
		t.Fatalf("shop, which cannot load beside greet: %d %s\n%s", first.status, first.body, withoutRequests(srv.logs))
	}
	// shop goes down to the version greet loaded.
	plugintest.WriteFile(t, shop, "go.sum", plugintest.Sums(t, proxy, "example.com/greet v1.0.0"))
	plugintest.WriteFile(t, shop, "go.mod", strings.Replace(readFile(t, filepath.Join(shop, "go.mod")), "v1.1.0", "v1.0.0", 1))
	reloaded := map[string]any{"plugin": "shop", "message": "isolated plugin reloaded"}
	for deadline := time.Now().Add(plugintest.BuildWait); len(srv.logs.Events(reloaded)) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("shop was not reloaded in its process:\n%s", withoutRequests(srv.logs))
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with a bound
	}
	if a := srv.do(t, "GET", "/_PLUGIN/shop/Hello", ""); a.status != http.StatusOK || a.body != "greet v1.0.0" {
		t.Errorf("shop after its go.mod changed: %d %s; want greet v1.0.0", a.status, a.body)
	}
}
