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

// Go modules of the tests below: none is downloaded, as none is built;
// a plan needs only go.mod and go.sum.
const (
	greetMod = "module plugind.local/lib\n\ngo 1.26\n\nrequire example.com/greet v1.0.0\n"
	// greetSum has the go.sum lines of example.com/greet v1.0.0 and v1.0.1.
	greetSum = "example.com/greet v1.0.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" +
		"example.com/greet v1.0.0/go.mod h1:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=\n" +
		"example.com/greet v1.0.1 h1:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC=\n" +
		"example.com/greet v1.0.1/go.mod h1:DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD=\n" +
		"example.com/greet v1.10.0 h1:EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE=\n" +
		"example.com/greet v1.10.0/go.mod h1:FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF=\n"
)

// writeAt writes content to dir/name, last modified at at (now if zero).
func writeAt(t *testing.T, dir, name, content string, at time.Time) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	plugintest.WriteFile(t, dir, name, content)
	if !at.IsZero() {
		if err := os.Chtimes(filepath.Join(dir, name), at, at); err != nil {
			t.Fatal(err)
		}
	}
}

func newTestPipeline(t *testing.T, pluginPath string) *Pipeline {
	t.Helper()
	p, err := New(t.Context(), Options{SrcDir: filepath.Join(pluginPath, "src"), CacheDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDeclaredReadOncePerLoad: the module a plugin declares its
// requirements in is read once, not by each of Check, Key and Sums in a
// load, nor again on every request for a plugin it makes fail, while its
// files are unchanged (and were written long enough ago, see
// racyWindow).
func TestDeclaredReadOncePerLoad(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	tests := []struct {
		name   string
		plugin string            // its name
		files  map[string]string // under the plugin path
		check  bool              // Check passes
		sums   int               // Sums' lines; 0: not checked
	}{
		{name: "lib/go.mod", plugin: "hello", check: true, sums: 6,
			files: map[string]string{"go.mod": greetMod, "go.sum": greetSum}},
		{name: "refused: no go.sum line", plugin: "hello", check: true,
			files: map[string]string{"go.mod": greetMod, "go.sum": "\n"}},
		{name: "a folder's own go.mod", plugin: "shop", check: true, sums: 6,
			files: map[string]string{
				"src/shop/main.go": "package main\n\nfunc GETShopHandler() string { return \"shop\" }\n",
				"src/shop/go.mod":  strings.Replace(greetMod, "plugind.local/lib", "example.com/shop", 1),
				"src/shop/go.sum":  greetSum,
			}},
		{name: "go.mod requiring nothing", plugin: "hello", check: true, sums: 0,
			files: map[string]string{"go.mod": "module plugind.local/lib\n\ngo 1.26\n"}},
		{name: "go.mod that does not parse", plugin: "hello", check: false, sums: 0,
			files: map[string]string{"go.mod": "module plugind.local/lib\n\nrequire (\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t, "hello")
			for name, content := range tt.files {
				writeAt(t, filepath.Join(dir, filepath.Dir(name)), filepath.Base(name), content, old)
			}
			p := newTestPipeline(t, dir)
			var reads atomic.Int64
			p.onDeclared = func(string) { reads.Add(1) }
			src, err := p.Find(tt.plugin)
			if err != nil {
				t.Fatal(err)
			}
			keys := map[string]bool{}
			for range 3 { // a load, then two requests
				if err := p.Check(src); (err == nil) != tt.check {
					t.Fatalf("Check: %v, want passing %v", err, tt.check)
				}
				if !tt.check {
					continue // the loader goes no further
				}
				k, err := p.Key(src)
				if err != nil {
					t.Fatal(err)
				}
				keys[k] = true
				if got := len(p.Sums(src)); tt.sums > 0 && got != tt.sums {
					t.Errorf("Sums: %d lines, want %d", got, tt.sums)
				}
			}
			if n := reads.Load(); n != 1 {
				t.Errorf("three loads read the declared module %d times, want 1", n)
			}
			if len(keys) > 1 {
				t.Errorf("one source gave %d keys", len(keys))
			}
		})
	}
}

// TestDeclaredEditSeen: an edit of the declared module is seen by the
// next Key, the one that leaves go.mod's size and modification time as
// they were included: written within one tick of the filesystem's clock
// as the file was read, or replaced by another file (a rename) with the
// same size and time. Key after the edit is what a new pipeline computes.
func TestDeclaredEditSeen(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	tests := []struct {
		name string
		at   time.Time // the files' modification time before the edit; zero: now
		sum  string    // go.sum before the edit
		edit func(t *testing.T, lib string)
	}{
		{name: "go.mod of another size", at: old, sum: greetSum, edit: func(t *testing.T, lib string) {
			writeAt(t, lib, "go.mod", strings.Replace(greetMod, "v1.0.0", "v1.10.0", 1), time.Time{})
		}},
		{name: "go.mod of the same size in the same tick", sum: greetSum, edit: func(t *testing.T, lib string) {
			fi, err := os.Stat(filepath.Join(lib, "go.mod"))
			if err != nil {
				t.Fatal(err)
			}
			writeAt(t, lib, "go.mod", strings.Replace(greetMod, "v1.0.0", "v1.0.1", 1), fi.ModTime())
		}},
		{name: "go.mod replaced by one of the same size and time", at: old, sum: greetSum, edit: func(t *testing.T, lib string) {
			writeAt(t, lib, "go.mod.new", strings.Replace(greetMod, "v1.0.0", "v1.0.1", 1), old)
			if err := os.Rename(filepath.Join(lib, "go.mod.new"), filepath.Join(lib, "go.mod")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "go.sum given the missing lines", at: old, sum: "\n", edit: func(t *testing.T, lib string) {
			writeAt(t, lib, "go.sum", greetSum, time.Time{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t, "hello")
			writeAt(t, dir, "go.mod", greetMod, tt.at)
			writeAt(t, dir, "go.sum", tt.sum, tt.at)
			p := newTestPipeline(t, dir)
			src, err := p.Find("hello")
			if err != nil {
				t.Fatal(err)
			}
			before, err := p.Key(src)
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(t, dir)
			after, err := p.Key(src)
			if err != nil {
				t.Fatal(err)
			}
			want, err := newTestPipeline(t, dir).Key(src)
			if err != nil {
				t.Fatal(err)
			}
			if after != want || after == before {
				t.Errorf("key after the edit %.12s, before %.12s; a new pipeline's %.12s", after, before, want)
			}
		})
	}
}
