package main

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/plugind/plugind/internal/plugintest"
)

// TestPrebuiltIsolatedWithoutToolchain: with every plugin isolated
// (plugins.isolation = "process"), plugind build builds their
// executables; the same binary in prebuilt mode, with no go and no C
// compiler on PATH and the plugin directory (cache included) read-only,
// serves each from a process of its own, writes nothing, and answers a
// plugin built by nobody 503 naming plugind build, as the start logged.
func TestPrebuiltIsolatedWithoutToolchain(t *testing.T) {
	bin := buildBinary(t)
	pp := plugintest.PluginPath(t, "hello", "crashy")
	cache := filepath.Join(pp, ".plugind") // the default: inside the plugin path
	t.Setenv("PREST_PLUGINS_ISOLATION", "process")
	out, err := plugind(t, bin, plugintest.Root(), pp, cache, "build")
	if err != nil || strings.Count(out, " (process) ") != 2 || strings.Count(out, " built ") != 2 {
		t.Fatalf("plugind build: %v\n%s", err, out)
	}
	plugintest.WriteFile(t, filepath.Join(pp, "src"), "unbuilt.go",
		plugintest.Unique(t, "package main\n\nfunc GETHiHandler() string { return \"hi\" }\n"))

	p, ready := startPrebuilt(t, bin, pp, "PREST_PLUGINS_ISOLATION=process")
	t.Logf("prebuilt mode, isolated plugins: start to /readyz 200 in %s", ready)
	if !p.logged("isolated plugin is not built; its calls fail until plugind build builds it") {
		t.Error("the start did not log the isolated plugin built by nobody")
	}
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"/_PLUGIN/hello/Hello?abc=123", 200, `"abc":["123"]`},
		{"/_PLUGIN/crashy/Ok", 200, "ok "},
		{"/_PLUGIN/unbuilt/Hi", 503, "run `plugind build unbuilt`"},
	}
	for _, tt := range tests {
		status, body := get(t, p.url+tt.path)
		if status != tt.status || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s = %d %s, want %d with %q", tt.path, status, body, tt.status, tt.want)
		}
		if tt.status != 200 && !json.Valid([]byte(body)) {
			t.Errorf("GET %s: not JSON: %s", tt.path, body)
		}
		if tt.path == "/_PLUGIN/crashy/Ok" {
			if pid, err := strconv.Atoi(strings.TrimPrefix(body, "ok ")); err != nil || pid == p.cmd.Process.Pid {
				t.Errorf("crashy answered %q; want ok from a process other than the server's (%d)", body, p.cmd.Process.Pid)
			}
		}
	}
}
