package build

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/plugerr"
)

// TestPrebuiltRefusals covers what a prebuilt-mode pipeline answers for a
// plugin it cannot serve, without building anything: every case is
// ErrNotBuilt naming the plugind build command, and the cache is never
// written to.
func TestPrebuiltRefusals(t *testing.T) {
	host, err := HostBuildInfo()
	if err != nil {
		t.Fatal(err)
	}
	src := []byte("package main\n\nfunc GETHelloHandler() string { return \"hi\" }\n")
	tests := []struct {
		name  string
		entry func(srcHash string) []byte // nil: no entry
		want  string
	}{
		{"no entry", nil, "no artifact was built for its current source"},
		{"entry of another binary", func(sh string) []byte {
			return mustJSON(t, manifestEntry{Plugin: "hello", Source: sh, Key: strings.Repeat("a", 64), Identity: "another"})
		}, "built by a different plugind binary"},
		{"damaged entry", func(string) []byte { return []byte("{") }, "its build record is damaged"},
		{"artifact gone", func(sh string) []byte {
			return mustJSON(t, manifestEntry{Plugin: "hello", Source: sh, Key: strings.Repeat("b", 64), Identity: binaryID(host)})
		}, "its artifact is missing from the cache"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			srcDir, cache := filepath.Join(dir, "src"), filepath.Join(dir, "cache")
			if err := os.MkdirAll(srcDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(srcDir, "hello.go"), src, 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := New(context.Background(), Options{SrcDir: srcDir, CacheDir: cache, Prebuilt: true, Go: "/nonexistent/go", Host: &host, Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			if tt.entry != nil {
				s, err := p.Find("hello")
				if err != nil {
					t.Fatal(err)
				}
				sh, err := sourceHash(s)
				if err != nil {
					t.Fatal(err)
				}
				if err := writeFileAtomic(p.manifest().path("hello", sh), tt.entry(sh)); err != nil {
					t.Fatal(err)
				}
			}
			before := plugintest.Tree(t, cache)
			for range 2 { // refusals are not remembered: a later plugind build is seen
				s, err := p.Find("hello")
				if err != nil {
					t.Fatal(err)
				}
				k, err := p.Key(s)
				if err == nil {
					_, _, err = p.Artifact(context.Background(), s, k, nil)
				}
				var e *plugerr.Error
				if !errors.As(err, &e) || !errors.Is(err, plugerr.ErrNotBuilt) {
					t.Fatalf("Key or Artifact: %v, want ErrNotBuilt", err)
				}
				if !strings.Contains(e.Msg, tt.want) || !strings.Contains(e.Msg, "plugind build hello") || strings.Contains(e.Msg, dir) {
					t.Errorf("message %q: want %q and the command, no paths", e.Msg, tt.want)
				}
			}
			if after := plugintest.Tree(t, cache); after != before {
				t.Errorf("prebuilt mode wrote to the cache:\nbefore %s\nafter  %s", before, after)
			}
			if problems := p.ToolchainProblems(); len(problems) > 0 {
				t.Errorf("prebuilt mode needs no toolchain, got problems %q", problems)
			}
			if _, err := p.Build(context.Background(), "hello"); err == nil {
				t.Error("Build in prebuilt mode succeeded; it must refuse")
			}
		})
	}
}

// TestSourceHashIgnoresLocation: a build stage's tree and the image's
// copy of it hash alike, so an entry written in one is found in the other.
func TestSourceHashIgnoresLocation(t *testing.T) {
	write := func(dir string) Source {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, "a.go")
		if err := os.WriteFile(f, []byte("package main\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return Source{Name: "a", Kind: KindFolder, Files: []string{f}}
	}
	a, err := sourceHash(write(filepath.Join(t.TempDir(), "build", "src", "a")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sourceHash(write(filepath.Join(t.TempDir(), "app", "lib", "src", "a")))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("same files in two places hash apart: %s vs %s", a, b)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
