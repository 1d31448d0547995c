package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/server"
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

// TestIsolatedPluginsNeedBuilds: prebuilt mode has no toolchain, and
// plugind build does not build isolated plugins' executables, so a plugin
// configured to run in a process stops the start with the reason.
func TestIsolatedPluginsNeedBuilds(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	cfg := loadConfig(t, dir, `
[plugins]
build = "off"

[tasks]
dir = "`+t.TempDir()+`"

[plugin.hello]
isolation = "process"
`)
	_, err := server.New(context.Background(), cfg, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "plugin.hello.isolation") || !strings.Contains(err.Error(), `plugins.build is "off"`) {
		t.Errorf("New = %v", err)
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
