package isolate_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/isolate"
	"github.com/plugind/plugind/loader"
)

// TestFolderOwnPackages: a plugin that imports a package of the module
// it declares its requirements in runs in a process as it runs
// in-process: its program compiles the package from the module's
// directory. That is a folder plugin with a go.mod of its own
// (testdata/deps/shopcart in lib/src/shop: example.com/shop importing
// example.com/shop/cart from lib/src/shop/cart), or a single-file plugin
// importing a package of lib/go.mod's module (lib/src/shop.go importing
// plugind.local/lib/cart from lib/cart). An edit of the package alone,
// seen by the loader's watcher, replaces the process with one that
// serves the new code; a plugin that does not import it keeps its
// process.
func TestFolderOwnPackages(t *testing.T) {
	const path = "/_PLUGIN/shop/Hello"
	tests := []struct {
		name string
		c    config
		pkg  string // the imported package's directory, in the plugin path
		says string // what it answers before the edit
	}{
		{name: "a folder's own go.mod", pkg: "src/shop/cart", says: "example.com/shop/cart",
			c: config{trees: map[string]string{"shop": "deps/shopcart"}}},
		{name: "lib/go.mod", pkg: "cart", says: "plugind.local/lib/cart", c: config{files: map[string]string{
			"go.mod":       "module plugind.local/lib\n\ngo 1.22\n",
			"cart/cart.go": "package cart\n\nfunc Hello() string { return \"plugind.local/lib/cart\" }\n",
			"src/shop.go":  "package main\n\nimport \"plugind.local/lib/cart\"\n\nfunc GETHelloHandler() string { return cart.Hello() }\n",
			"src/other.go": "package main\n\nfunc GETHelloHandler() string { return \"other\" }\n",
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, env := plugintest.ModuleProxy(t) // hermetic: the go command fetches nothing
			c := tt.c
			c.isolated, c.goEnv, c.watch = []string{"shop", "other"}, env, true
			h := newHarness(t, c)
			if a := h.get(t, path); a.status != http.StatusOK || a.body != tt.says {
				t.Fatalf("GET %s = %d %s; want 200 %s", path, a.status, a.body, tt.says)
			}
			before := h.m.Stat("shop").PIDs
			if len(before) != 1 {
				t.Fatalf("shop runs in %d processes; want 1", len(before))
			}
			var other []int
			if c.files["src/other.go"] != "" {
				if a := h.get(t, "/_PLUGIN/other/Hello"); a.status != http.StatusOK || a.body != "other" {
					t.Fatalf("GET /_PLUGIN/other/Hello = %d %s; want 200 other", a.status, a.body)
				}
				other = h.m.Stat("other").PIDs
			}

			edited := time.Now()
			want := "edited " + strconv.FormatInt(edited.UnixNano(), 10) // a program no cache has seen
			plugintest.WriteFile(t, filepath.Join(filepath.Dir(h.src), filepath.FromSlash(tt.pkg)), "cart.go",
				"package cart\n\nfunc Hello() string { return "+strconv.Quote(want)+" }\n")
			// A reload of each running plugin the change may concern.
			pending := map[string]bool{"shop": true, "other": other != nil}
			for pending["shop"] || pending["other"] {
				select {
				case r := <-h.reloaded:
					if r.err != nil {
						t.Fatalf("the watcher's reload of %s: %v\n%s", r.plugin, r.err, h.log)
					}
					pending[r.plugin] = false
				case <-time.After(plugintest.BuildWait):
					t.Fatalf("no reload of %v within %s of an edit of %s/cart.go\n%s", pending, plugintest.BuildWait, tt.pkg, h.log)
				}
			}
			if a := h.get(t, path); a.status != http.StatusOK || a.body != want {
				t.Fatalf("GET %s = %d %s after an edit of %s/cart.go; want 200 %s", path, a.status, a.body, tt.pkg, want)
			}
			t.Logf("edit of %s/cart.go to the new process serving: %s (the watcher's quiet time, a build, a start)", tt.pkg, time.Since(edited).Round(time.Millisecond))
			if after := h.m.Stat("shop").PIDs; len(after) != 1 || after[0] == before[0] {
				t.Errorf("processes %v after the reload, %v before; want one new one", after, before)
			}
			if other != nil {
				if after := h.m.Stat("other").PIDs; !slices.Equal(after, other) {
					t.Errorf("other's processes %v after an edit of a package it does not import, %v before; want the same", after, other)
				}
			}
		})
	}
}

// TestFolderOwnPackagesPrebuilt: the program plugind build makes
// (Manager.Build) of a plugin that imports a package of the module it
// declares its requirements in is keyed and recorded by that package
// too, for a folder's own go.mod as for lib/go.mod. An edit of the
// package alone is a new program, and a prebuilt-mode Manager, which
// never builds, runs a program only for the package it was built from:
// after an edit nobody built, the plugin is not built (ErrNotBuilt,
// naming plugind build) rather than served from the old program.
func TestFolderOwnPackagesPrebuilt(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, pluginPath string)
		pkg   string // the imported package's directory, in the plugin path
		says  string // what it answers before the edit
	}{
		{name: "a folder's own go.mod", pkg: "src/shop/cart", says: "example.com/shop/cart", setup: func(t *testing.T, pluginPath string) {
			plugintest.CopyTree(t, "deps/shopcart", filepath.Join(pluginPath, "src", "shop"))
		}},
		{name: "lib/go.mod", pkg: "cart", says: "plugind.local/lib/cart", setup: func(t *testing.T, pluginPath string) {
			plugintest.WriteFile(t, pluginPath, "go.mod", "module plugind.local/lib\n\ngo 1.22\n")
			if err := os.Mkdir(filepath.Join(pluginPath, "cart"), 0o755); err != nil {
				t.Fatal(err)
			}
			plugintest.WriteFile(t, filepath.Join(pluginPath, "cart"), "cart.go", "package cart\n\nfunc Hello() string { return \"plugind.local/lib/cart\" }\n")
			plugintest.WriteFile(t, filepath.Join(pluginPath, "src"), "shop.go",
				"package main\n\nimport \"plugind.local/lib/cart\"\n\nfunc GETHelloHandler() string { return cart.Hello() }\n")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, env := plugintest.ModuleProxy(t) // hermetic: the go command fetches nothing
			pluginPath, cache := plugintest.PluginPath(t), t.TempDir()
			tt.setup(t, pluginPath)
			manager := func(prebuilt bool) *isolate.Manager {
				t.Helper()
				p, err := build.New(t.Context(), build.Options{SrcDir: filepath.Join(pluginPath, "src"), CacheDir: cache, Prebuilt: prebuilt, Env: env, Log: zerolog.Nop()})
				if err != nil {
					t.Fatal(err)
				}
				// As server.NewIsolated wires them.
				m, err := isolate.New(isolate.Options{Find: isolate.PipelineFinder(p), ModuleDir: p.ModuleDir(), CacheDir: cache, Prebuilt: p.Prebuilt(),
					Modules: p.ProcessModule, SourceHash: p.SourceHash, Env: p.GoEnv(), Log: zerolog.Nop()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { m.Close(context.Background()) })
				return m
			}
			builder, server := manager(false), manager(true)
			serves := func(want string) {
				t.Helper()
				h, err := server.Resolve(t.Context(), "shop", "Hello", http.MethodGet)
				if err != nil {
					t.Fatal(err)
				}
				rec := httptest.NewRecorder()
				if err := h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/_PLUGIN/shop/Hello", nil)); err != nil || rec.Body.String() != want {
					t.Fatalf("prebuilt mode serves %q (%v); want %q", rec.Body.String(), err, want)
				}
			}

			first, err := builder.Build(t.Context(), "shop")
			if err != nil {
				t.Fatal(err)
			}
			if err := server.Built("shop"); err != nil {
				t.Fatalf("prebuilt mode, after plugind build: %v; want the program found", err)
			}
			serves(tt.says)
			edited := "edited " + strconv.FormatInt(time.Now().UnixNano(), 10) // a program no cache has seen
			plugintest.WriteFile(t, filepath.Join(pluginPath, filepath.FromSlash(tt.pkg)), "cart.go", "package cart\n\nfunc Hello() string { return "+strconv.Quote(edited)+" }\n")
			err = server.Built("shop")
			if !errors.Is(err, loader.ErrNotBuilt) || !strings.Contains(err.Error(), "plugind build shop") {
				t.Fatalf("prebuilt mode, after an edit of %s/cart.go nobody built: %v; want ErrNotBuilt naming plugind build shop", tt.pkg, err)
			}
			second, err := builder.Build(t.Context(), "shop")
			if err != nil || second.Key == first.Key || second.Duration == 0 {
				t.Fatalf("Build after an edit of %s/cart.go: %+v, %v; want a new program built (was %.12s)", tt.pkg, second, err, first.Key)
			}
			if err := server.Built("shop"); err != nil {
				t.Fatalf("prebuilt mode, after plugind build of the edit: %v; want the program found", err)
			}
			if err := server.Reload(t.Context(), "shop"); err != nil {
				t.Fatal(err)
			}
			serves(edited)
		})
	}
}
