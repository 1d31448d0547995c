package loader_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// TestIgnoredNames: files and folders whose names begin with '_' are
// ignored, as the go command ignores them: no request, build, listing or
// middleware reaches them, though their names are well formed.
func TestIgnoredNames(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	src := filepath.Join(dir, "src")
	body := "package main\n\nfunc GETHelloHandler() string { return \"hidden\" }\n"
	plugintest.WriteFile(t, src, "_name.go", body)
	if err := os.Mkdir(filepath.Join(src, "_dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	plugintest.WriteFile(t, filepath.Join(src, "_dir"), "main.go", body)
	plugintest.WriteFile(t, dir, "_lib.so", "not opened")
	l, _ := newLoader(t, dir)
	ctx := context.Background()
	for _, name := range []string{"_name", "_dir", "_lib"} {
		if !loader.ValidName(name) {
			t.Fatalf("%q is not a valid name: the test means a well-formed one", name)
		}
		if _, err := l.Handler(ctx, name, "Hello", "GET"); !errors.Is(err, loader.ErrNotFound) {
			t.Errorf("Handler(%s): %v, want ErrNotFound", name, err)
		}
		if _, err := l.Pipeline().Build(ctx, name); !errors.Is(err, loader.ErrNotFound) {
			t.Errorf("Build(%s): %v, want ErrNotFound", name, err)
		}
		if _, err := l.Middleware(ctx, name, "Hello"); !errors.Is(err, loader.ErrNotFound) {
			t.Errorf("Middleware(%s): %v, want ErrNotFound", name, err)
		}
		if _, _, err := l.Pipeline().Cached(name); !errors.Is(err, loader.ErrNotFound) {
			t.Errorf("Cached(%s): %v, want ErrNotFound", name, err)
		}
	}
	found, skipped, err := l.Discover()
	if err != nil || len(found) != 1 || found[0].Name != "hello" || len(skipped) != 0 {
		t.Errorf("Discover = %v, %q, %v; want hello alone, nothing skipped", found, skipped, err)
	}
	for _, i := range l.List() {
		if i.Name != "hello" {
			t.Errorf("listed %q", i.Name)
		}
	}
}
