package build

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/plugerr"
)

// TestRefusedPrebuiltIsNotRehashed: a prebuilt library that was refused
// is not hashed again on every request; its verdict is remembered by
// path, size and modification time, so a replaced file is looked at anew.
func TestRefusedPrebuiltIsNotRehashed(t *testing.T) {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, dir, "old.so", "not a shared library")
	p, err := New(t.Context(), Options{SrcDir: filepath.Join(dir, "src"), CacheDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	var hashed atomic.Int64
	p.onHash = func(path string) {
		if filepath.Base(path) == "old.so" {
			hashed.Add(1)
		}
	}
	refused := func() {
		t.Helper()
		src, err := p.Find("old")
		if err != nil {
			t.Fatal(err)
		}
		k, err := p.Key(src)
		if err == nil {
			_, _, err = p.Artifact(t.Context(), src, k, nil)
		}
		if !errors.Is(err, plugerr.ErrOpen) {
			t.Fatalf("err = %v, want the library refused", err)
		}
	}
	for range 3 {
		refused()
	}
	if n := hashed.Load(); n != 1 {
		t.Errorf("three lookups hashed the refused library %d times, want 1", n)
	}
	plugintest.WriteFile(t, dir, "old.so", "still not a shared library")
	refused()
	if n := hashed.Load(); n != 2 {
		t.Errorf("a replaced library was hashed %d times in all, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "old.so")); err != nil {
		t.Fatal(err)
	}
}
