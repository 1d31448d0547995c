package build

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/plugerr"
)

// TestRefusedPrebuiltIsNotRehashed: a prebuilt library that was refused
// is not hashed again on every request; its verdict is remembered by
// path and stamp (size, modification time, identity), so a replaced file
// is looked at anew. It was written long ago (see racyWindow).
func TestRefusedPrebuiltIsNotRehashed(t *testing.T) {
	dir := plugintest.PluginPath(t)
	writeAt(t, dir, "old.so", "not a shared library", time.Now().Add(-time.Hour))
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

// TestReplacedPrebuiltIsSeen: a prebuilt library replaced by one of the
// same size is hashed anew, written within one tick of the filesystem's
// clock as the one it replaces (the same modification time) or moved
// over it with the same size and time.
func TestReplacedPrebuiltIsSeen(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	tests := []struct {
		name    string
		at      time.Time // the first library's modification time; zero: now
		replace func(t *testing.T, dir string)
	}{
		{name: "rewritten in the same tick", replace: func(t *testing.T, dir string) {
			fi, err := os.Stat(filepath.Join(dir, "old.so"))
			if err != nil {
				t.Fatal(err)
			}
			writeAt(t, dir, "old.so", "library two", fi.ModTime())
		}},
		{name: "moved over with the same size and time", at: old, replace: func(t *testing.T, dir string) {
			writeAt(t, dir, "new.so.tmp", "library two", old)
			if err := os.Rename(filepath.Join(dir, "new.so.tmp"), filepath.Join(dir, "old.so")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			writeAt(t, dir, "old.so", "library one", tt.at)
			p := newTestPipeline(t, dir)
			key := func(p *Pipeline) string {
				t.Helper()
				src, err := p.Find("old")
				if err != nil {
					t.Fatal(err)
				}
				k, err := p.Key(src)
				if err != nil {
					t.Fatal(err)
				}
				return k
			}
			before := key(p)
			tt.replace(t, dir)
			if after, want := key(p), key(newTestPipeline(t, dir)); after != want || after == before {
				t.Errorf("key after the replacement %.12s, before %.12s; a new pipeline's %.12s", after, before, want)
			}
		})
	}
}
