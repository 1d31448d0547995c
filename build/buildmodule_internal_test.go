package build

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
)

// Plugins of the tests below, under a plugin path. None is built: a key
// and a plan need only go.mod, go.sum and the vendored files.
var (
	helloPlugin = map[string]string{"src/hello.go": "package main\n\nfunc GETHelloHandler() string { return \"hi\" }\n"}
	greetPlugin = map[string]string{
		"go.mod":       greetMod,
		"go.sum":       greetSum,
		"src/greet.go": "package main\n\nimport \"example.com/greet\"\n\nfunc GETHelloHandler() string { return greet.Hello() }\n",
	}
	cartPlugin = map[string]string{
		"src/shop/go.mod":       "module example.com/shop\n\ngo 1.26\n",
		"src/shop/shop.go":      "package main\n\nimport \"example.com/shop/cart\"\n\nfunc GETHelloHandler() string { return cart.Hello() }\n",
		"src/shop/cart/cart.go": "package cart\n\nfunc Hello() string { return \"cart\" }\n",
	}
	vendorPlugin = map[string]string{
		"src/shop/go.mod":                                 "module example.com/shop\n\ngo 1.26\n\nrequire example.com/greet v1.0.0\n",
		"src/shop/shop.go":                                "package main\n\nimport \"example.com/greet\"\n\nfunc GETHelloHandler() string { return greet.Hello() }\n",
		"src/shop/vendor/modules.txt":                     "# example.com/greet v1.0.0\n## explicit\nexample.com/greet\n",
		"src/shop/vendor/example.com/greet/greet.go":      "package greet\n\nfunc Hello() string { return \"greet v1.0.0\" }\n",
		"src/shop/vendor/example.com/greet/greet_more.go": "package greet\n\nconst Version = \"v1.0.0\"\n",
	}
)

// buildModuleFixture writes files under a new plugin path, and the
// server's go.mod and go.sum into a build module of their own, all last
// modified at at (now if zero), and returns a pipeline over them.
func buildModuleFixture(t *testing.T, files map[string]string, at time.Time) (p *Pipeline, pluginPath, moduleDir string) {
	t.Helper()
	pluginPath, moduleDir = plugintest.PluginPath(t), t.TempDir()
	for name, content := range files {
		writeAt(t, filepath.Join(pluginPath, filepath.Dir(name)), filepath.Base(name), content, at)
	}
	if !at.IsZero() { // directories too: a vendored package's is stamped
		for name := range files {
			for dir := filepath.Dir(name); dir != "."; dir = filepath.Dir(dir) {
				if err := os.Chtimes(filepath.Join(pluginPath, dir), at, at); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, name := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(plugintest.Root(), name))
		if err != nil {
			t.Fatal(err)
		}
		writeAt(t, moduleDir, name, string(data), at)
	}
	return newModulePipeline(t, pluginPath, moduleDir, t.TempDir()), pluginPath, moduleDir
}

// newModulePipeline is a pipeline over pluginPath building in moduleDir
// with the artifact cache cacheDir (a vendored module's copy is there,
// named in the plan, so the key is the cache's).
func newModulePipeline(t *testing.T, pluginPath, moduleDir, cacheDir string) *Pipeline {
	t.Helper()
	p, err := New(t.Context(), Options{SrcDir: filepath.Join(pluginPath, "src"), CacheDir: cacheDir, ModuleDir: moduleDir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// key is p's key for plugin name, after Check.
func key(t *testing.T, p *Pipeline, name string) string {
	t.Helper()
	src, err := p.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(src); err != nil {
		t.Fatal(err)
	}
	k, err := p.Key(src)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestBuildModuleReadOnce: the build module's go.mod and go.sum are read
// once, not by each of Check (checkImports), Key (keyFor, planFor) and
// Sums in a load and again on every request, while they are unchanged
// and were written long enough ago (see racyWindow); a vendoring
// plugin's vendored files are digested once.
func TestBuildModuleReadOnce(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	tests := []struct {
		name    string
		plugin  string
		files   map[string]string
		vendors int64 // vendor directories digested in all
		owns    int64 // digests of a module's own packages
	}{
		{name: "no go.mod", plugin: "hello", files: helloPlugin},
		{name: "lib/go.mod", plugin: "greet", files: greetPlugin},
		{name: "a folder importing its own package", plugin: "shop", files: cartPlugin, owns: 1},
		{name: "a folder that vendors", plugin: "shop", files: vendorPlugin, vendors: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, _ := buildModuleFixture(t, tt.files, old)
			var reads, vendors, owns atomic.Int64
			p.onBuildModule = func() { reads.Add(1) }
			p.onVendor = func(string) { vendors.Add(1) }
			p.onOwn = func(string) { owns.Add(1) }
			keys := map[string]bool{}
			for range 3 { // a load, then two requests
				k := key(t, p, tt.plugin)
				keys[k] = true
				src, err := p.Find(tt.plugin)
				if err != nil {
					t.Fatal(err)
				}
				p.Sums(src)
				if _, err := p.plan(src, k); err != nil {
					t.Fatal(err)
				}
			}
			if n := reads.Load(); n != 1 {
				t.Errorf("three loads read the build module %d times, want 1", n)
			}
			if n := vendors.Load(); n != tt.vendors {
				t.Errorf("three loads digested the vendor directory %d times, want %d", n, tt.vendors)
			}
			if n := owns.Load(); n != tt.owns {
				t.Errorf("three loads digested the module's own packages %d times, want %d", n, tt.owns)
			}
			if len(keys) > 1 {
				t.Errorf("one source gave %d keys", len(keys))
			}
		})
	}
}

// sameSize changes content without changing its size.
func sameSize(content string) string {
	i := strings.LastIndex(content, "=")
	if i < 0 {
		i = len(content) - 2
	}
	return content[:i] + "#" + content[i+1:]
}

// TestBuildModuleEditSeen: an edit of the build module's go.mod or
// go.sum, or of a vendored file, is seen by the next Key, the one that
// leaves the file's size and modification time as they were included:
// written within one tick of the filesystem's clock as the file was
// read, or replaced by another file (a rename) with the same size and
// time. Key after the edit is what a new pipeline computes.
func TestBuildModuleEditSeen(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	rewrite := func(t *testing.T, dir, name string, edit func(string) string, at func(fi os.FileInfo) time.Time) {
		t.Helper()
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		writeAt(t, dir, name, edit(string(data)), at(fi))
	}
	now := func(os.FileInfo) time.Time { return time.Time{} }
	same := func(fi os.FileInfo) time.Time { return fi.ModTime() }
	tests := []struct {
		name   string
		plugin string
		files  map[string]string
		at     time.Time // the files' modification time before the edit; zero: now
		// edit changes the build module (in moduleDir) or the plugin
		// path (pluginPath).
		edit func(t *testing.T, pluginPath, moduleDir string)
	}{
		{name: "go.sum of another size", plugin: "hello", files: helloPlugin, at: old, edit: func(t *testing.T, _, mod string) {
			rewrite(t, mod, "go.sum", func(s string) string {
				return s + "example.com/extra v1.0.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
			}, now)
		}},
		{name: "go.sum of the same size in the same tick", plugin: "hello", files: helloPlugin, edit: func(t *testing.T, _, mod string) {
			rewrite(t, mod, "go.sum", sameSize, same)
		}},
		{name: "go.sum replaced by one of the same size and time", plugin: "greet", files: greetPlugin, at: old, edit: func(t *testing.T, _, mod string) {
			data, err := os.ReadFile(filepath.Join(mod, "go.sum"))
			if err != nil {
				t.Fatal(err)
			}
			writeAt(t, mod, "go.sum.new", sameSize(string(data)), old)
			if err := os.Rename(filepath.Join(mod, "go.sum.new"), filepath.Join(mod, "go.sum")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "go.mod of the same size in the same tick", plugin: "shop", files: cartPlugin, edit: func(t *testing.T, _, mod string) {
			rewrite(t, mod, "go.mod", func(s string) string { return strings.Replace(s, "go 1.", "go 2.", 1) }, same)
		}},
		{name: "a vendored file of the same size in the same tick", plugin: "shop", files: vendorPlugin, edit: func(t *testing.T, pp, _ string) {
			rewrite(t, filepath.Join(pp, "src/shop/vendor/example.com/greet"), "greet.go", func(s string) string { return strings.Replace(s, "v1.0.0", "v1.0.X", 1) }, same)
		}},
		{name: "a vendored file replaced by one of the same size and time", plugin: "shop", files: vendorPlugin, at: old, edit: func(t *testing.T, pp, _ string) {
			dir := filepath.Join(pp, "src/shop/vendor/example.com/greet")
			writeAt(t, dir, "greet.go.new", strings.Replace(vendorPlugin["src/shop/vendor/example.com/greet/greet.go"], "v1.0.0", "v1.0.X", 1), old)
			if err := os.Rename(filepath.Join(dir, "greet.go.new"), filepath.Join(dir, "greet.go")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a file added to a vendored package", plugin: "shop", files: vendorPlugin, at: old, edit: func(t *testing.T, pp, _ string) {
			writeAt(t, filepath.Join(pp, "src/shop/vendor/example.com/greet"), "extra.go", "package greet\n", old)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, pluginPath, moduleDir := buildModuleFixture(t, tt.files, tt.at)
			before := key(t, p, tt.plugin)
			tt.edit(t, pluginPath, moduleDir)
			after := key(t, p, tt.plugin)
			want := key(t, newModulePipeline(t, pluginPath, moduleDir, p.cacheDir), tt.plugin)
			if after != want || after == before {
				t.Errorf("key after the edit %.12s, before %.12s; a new pipeline's %.12s", after, before, want)
			}
		})
	}
}

// TestUnplan: the build module Key plans for a plugin with dependencies
// is kept until a build takes it, or until Unplan drops it for a key no
// build will take (a middleware's, read after a change): a dev session
// of such reads must not pile them up.
func TestUnplan(t *testing.T) {
	p, _, _ := buildModuleFixture(t, greetPlugin, time.Time{})
	src, err := p.Find("greet")
	if err != nil {
		t.Fatal(err)
	}
	k, err := p.Key(src)
	if err != nil {
		t.Fatal(err)
	}
	planned := func() int {
		p.kmu.Lock()
		defer p.kmu.Unlock()
		return len(p.plans)
	}
	if n := planned(); n != 1 {
		t.Fatalf("%d plans after Key, want the one for %.12s", n, k)
	}
	p.Unplan(k)
	if n := planned(); n != 0 {
		t.Errorf("%d plans after Unplan, want none", n)
	}
	if pl, err := p.plan(src, k); err != nil || pl == nil {
		t.Errorf("plan after Unplan: %v, %v; want a new plan for the build that may yet come", pl, err)
	}
}
