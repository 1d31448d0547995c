package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/plugind/plugind/internal/plugintest"
)

// plugind runs the binary with the plugin path and a private cache, from
// dir, and returns its output and exit error.
func plugind(t *testing.T, bin, dir, pluginPath, cache string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PREST_PLUGINPATH="+pluginPath, "PREST_PLUGINS_CACHEDIR="+cache, "PREST_CONF=",
		"PREST_PLUGINS_BUILDWAIT="+plugintest.BuildWait.String(), "PREST_HTTP_WRITETIMEOUT="+plugintest.WriteTimeout.String(), "PREST_PLUGINS_LOADCHECKTIMEOUT=2m")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestCommandLine(t *testing.T) {
	bin := buildBinary(t)
	root := plugintest.Root()
	dir := plugintest.PluginPath(t, "hello", "std")
	cache := t.TempDir()

	out, err := plugind(t, bin, root, dir, cache, "build")
	if err != nil || !strings.Contains(out, "hello") || !strings.Contains(out, "built") {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err = plugind(t, bin, root, dir, cache, "build", "hello")
	if err != nil || !strings.Contains(out, "cached") {
		t.Errorf("second build: %v\n%s", err, out)
	}

	plugintest.WriteFile(t, filepath.Join(dir, "src"), "broken.go", "package main\n\nfunc GETXHandler() string { return 1 }\n")
	out, err = plugind(t, bin, root, dir, cache, "build", "broken", "hello")
	if err == nil || !strings.Contains(out, "broken") || !strings.Contains(out, "FAILED") || !strings.Contains(out, "broken.go:3:") {
		t.Errorf("build of a broken plugin: %v\n%s", err, out)
	}

	out, err = plugind(t, bin, root, dir, cache, "list", "--json")
	var infos []struct {
		Name     string
		State    string
		Handlers []struct{ Method, Func, ABI string }
	}
	if err != nil || json.Unmarshal([]byte(out), &infos) != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	states := map[string]string{}
	for _, i := range infos {
		states[i.Name] = i.State
		if i.Name == "std" && (len(i.Handlers) != 4 || i.Handlers[0].ABI != "standard") {
			t.Errorf("std handlers = %+v", i.Handlers)
		}
	}
	if states["hello"] != "built" || states["std"] != "built" || states["broken"] != "unbuilt" {
		t.Errorf("list states = %v", states)
	}
	if out, err := plugind(t, bin, root, dir, cache, "list"); err != nil || !strings.Contains(out, "GET     HelloWithStatus  legacy") {
		t.Errorf("list table: %v\n%s", err, out)
	}

	out, err = plugind(t, bin, root, dir, cache, "doctor")
	if err != nil || !strings.Contains(out, "ok          plugins can be built and loaded here") || !strings.Contains(out, "compatible with this server") {
		t.Errorf("doctor: %v\n%s", err, out)
	}
	// The go command and C compiler it found, with their versions.
	if !regexp.MustCompile(`(?m)^go          /\S+/go, go1\.\d+`).MatchString(out) || !regexp.MustCompile(`(?m)^cc          /\S+, \S+`).MatchString(out) {
		t.Errorf("doctor names no go command or C compiler:\n%s", out)
	}
	// An artifact that is not one makes doctor fail and say so.
	plugintest.WriteFile(t, cache, "0123456789abcdef0123456789abcdef.so", "not ELF")
	if out, err := plugind(t, bin, root, dir, cache, "doctor"); err == nil || !strings.Contains(out, "PROBLEM") {
		t.Errorf("doctor with a bad artifact: %v\n%s", err, out)
	}
	os.Remove(filepath.Join(cache, "0123456789abcdef0123456789abcdef.so"))

	for abi, args := range map[string][]string{"legacy": {"--abi", "legacy"}, "standard": nil} { // standard by default
		name := "fresh_" + abi
		if out, err := plugind(t, bin, root, dir, cache, append([]string{"new", name}, args...)...); err != nil || !strings.Contains(out, "/_PLUGIN/"+name+"/Hello") {
			t.Fatalf("new: %v\n%s", err, out)
		}
	}
	if src, err := os.ReadFile(filepath.Join(dir, "src", "fresh_standard.go")); err != nil || !strings.Contains(string(src), "func GETHelloHandler(w http.ResponseWriter, r *http.Request)") || !strings.Contains(string(src), "sdk.Settings(ctx)") {
		t.Errorf("plugind new without --abi: %v\n%s", err, src)
	}
	for _, abi := range []string{"legacy", "standard"} {
		// The scaffold's own test passes, run as the command says.
		base := filepath.Join(dir, "src", "fresh_"+abi)
		cmd := exec.Command("go", "test", base+".go", base+"_test.go")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("the %s scaffold's test: %v\n%s", abi, err, out)
		}
	}
	if out, err := plugind(t, bin, root, dir, cache, "new", "fresh_legacy"); err == nil {
		t.Errorf("new over an existing plugin succeeded:\n%s", out)
	}
	if out, err := plugind(t, bin, root, dir, cache, "new", "../evil"); err == nil {
		t.Errorf("new with a bad name succeeded:\n%s", out)
	}
	// The scaffolds only have to serve: the same in every run, they come
	// from the shared cache after the first (the cold build and the
	// cached one were tested above, in the private cache).
	p := startBinary(t, bin, dir)
	for abi, want := range map[string]string{"legacy": `"hello":"ada"`, "standard": `{"greeting":"hello","hello":"ada","plugin":"fresh_standard"}`} {
		status, body := get(t, p.url+"/_PLUGIN/fresh_"+abi+"/Hello?name=ada")
		if status != 200 || !strings.Contains(body, want) {
			t.Errorf("scaffolded %s plugin: %d %s, want %s", abi, status, body, want)
		}
	}
}

// TestBuildAnywhere runs the server away from its source tree. A binary
// built with -trimpath (as releases are) records no source path: it
// writes its own build module pinned to its dependency versions, and its
// plugins, zerolog-importing ones included, load. A binary built without
// it must build plugins from the very tree it was compiled from, whatever
// the working directory, or a plugin importing sdk is "a different version
// of package" to plugin.Open.
func TestBuildAnywhere(t *testing.T) {
	tests := []struct {
		name     string
		env      []string // for go build
		pinned   bool     // whether the server writes its own module
		fixtures []string
		want     map[string]string // path -> part of a 200 body
	}{
		{
			name:     "an installed release",
			env:      []string{"GOFLAGS=-trimpath"},
			pinned:   true,
			fixtures: []string{"hello"},
			want:     map[string]string{"/_PLUGIN/hello/Hello": `"msg":"Hello plugin caller!"`, "/_PLUGIN/logs/Level": "info"},
		},
		{
			name:     "a binary of this source tree",
			fixtures: []string{"sdkuser"},
			want:     map[string]string{"/_PLUGIN/sdkuser/Env": `"plugin":"sdkuser"`, "/_PLUGIN/logs/Level": "info"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := buildBinary(t, tt.env...)
			elsewhere := t.TempDir()
			dir := plugintest.PluginPath(t, tt.fixtures...)
			plugintest.WriteFile(t, filepath.Join(dir, "src"), "logs.go", plugintest.Unique(t,
				"package main\n\nimport \"github.com/rs/zerolog\"\n\nfunc GETLevelHandler() string { return zerolog.InfoLevel.String() }\n"))
			plugintest.WriteFile(t, filepath.Join(dir, "src"), "alien.go", plugintest.Unique(t,
				"package main\n\nimport \"github.com/google/uuid\"\n\nfunc GETIDHandler() string { return uuid.NewString() }\n"))
			p := startBinaryIn(t, elsewhere, bin, dir, "PREST_PLUGINS_CACHEDIR="+filepath.Join(elsewhere, "cache"))
			pinned := slices.ContainsFunc(p.seen, func(ev map[string]any) bool {
				return strings.HasPrefix(fmt.Sprint(ev["message"]), "no source tree of the server")
			})
			if pinned != tt.pinned {
				t.Fatalf("started in %s, the server wrote its own module: %v, want %v: %v", elsewhere, pinned, tt.pinned, p.seen)
			}
			for path, want := range tt.want {
				if status, body := get(t, p.url+path); status != 200 || !strings.Contains(body, want) {
					t.Errorf("%s: %d %s", path, status, body)
				}
			}
			if status, body := get(t, p.url+"/_PLUGIN/alien/ID"); status != 500 || !strings.Contains(body, "github.com/google/uuid") {
				t.Errorf("a plugin importing a module the server lacks: %d %s", status, body)
			}
		})
	}
}
