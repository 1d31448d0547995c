package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// TestPrebuiltModeReports: with plugins.build = "off", doctor names the
// sources plugind build has not built, and those only: not one it built,
// nor prestd's prebuilt NAME.so beside the sources, which is its own
// artifact (Pipeline.Cached finds it where it lies). plugind list says
// the same: built, built, unbuilt.
func TestPrebuiltModeReports(t *testing.T) {
	pp := plugintest.PluginPath(t, "hello")
	cache := t.TempDir() // cold: what is in it, this test built
	// No load check: its child would be this test binary, which is not
	// plugind. Nothing here opens a plugin.
	environ := []string{"PREST_PLUGINPATH=" + pp, "PREST_PLUGINS_CACHEDIR=" + cache, "PREST_CONF=", "PREST_PLUGINS_LOADCHECKTIMEOUT=0"}
	run := func(environ []string, args ...string) (int, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := Main(t.Context(), args, environ, &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}
	if code, out := run(environ, "build", "hello"); code != 0 {
		t.Fatalf("plugind build hello exited %d:\n%s", code, out)
	}
	// A real library for prestd's NAME.so: hello's artifact, copied.
	artifacts, err := filepath.Glob(filepath.Join(cache, "*.so"))
	if err != nil || len(artifacts) != 1 {
		t.Fatalf("the cache holds %q (%v); want hello's artifact", artifacts, err)
	}
	lib, err := os.ReadFile(artifacts[0])
	if err != nil {
		t.Fatal(err)
	}
	plugintest.WriteFile(t, pp, "legacy.so", string(lib))
	plugintest.WriteFile(t, filepath.Join(pp, "src"), "later.go", "package main\n\nfunc GETLaterHandler() string { return \"later\" }\n")

	off := append(environ, "PREST_PLUGINS_BUILD=off", "PREST_TASKS_DIR="+t.TempDir())
	code, out := run(off, "doctor")
	if code != 1 || !strings.Contains(out, "plugin later has no artifact for its source: run plugind build later") {
		t.Errorf("doctor exited %d; want 1, naming later:\n%s", code, out)
	}
	for _, name := range []string{"hello", "legacy"} {
		if strings.Contains(out, "plugin "+name+" ") {
			t.Errorf("doctor reports %s, which has an artifact:\n%s", name, out)
		}
	}

	code, out = run(off, "list", "--json")
	if code != 0 {
		t.Fatalf("plugind list exited %d:\n%s", code, out)
	}
	var infos []loader.Info
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("plugind list --json: %v\n%s", err, out)
	}
	got := map[string]loader.State{}
	for _, i := range infos {
		got[i.Name] = i.State
	}
	want := map[string]loader.State{"hello": loader.StateBuilt, "legacy": loader.StateBuilt, "later": loader.StateUnbuilt}
	for name, state := range want {
		if got[name] != state {
			t.Errorf("plugind list: %s is %q, want %q (all: %v)", name, got[name], state, got)
		}
	}
}
