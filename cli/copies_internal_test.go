package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// TestBuildCopies: plugind build builds the copies [plugin.NAME] copies
// asks for, so that a prebuilt-mode server, which builds nothing, serves
// the plugin with as many copies; one asking for more is told to run
// plugind build.
func TestBuildCopies(t *testing.T) {
	const name = "hellocopies" // a name of its own: its own artifacts
	pp := plugintest.PluginPath(t, "hello")
	src := filepath.Join(pp, "src")
	hello, err := os.ReadFile(filepath.Join(src, "hello.go"))
	if err != nil {
		t.Fatal(err)
	}
	plugintest.WriteFile(t, src, name+".go", string(hello))
	cache := t.TempDir() // cold: what is in it, this test built
	auto, err := build.New(t.Context(), build.Options{SrcDir: src, CacheDir: cache, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := auto.Build(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buildCopies(t.Context(), auto, name, res.Key, 2); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		copies int
		want   error
	}{
		{copies: 3, want: loader.ErrNotBuilt}, // copy 2 was never built
		{copies: 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("copies=", tt.copies), func(t *testing.T) {
			logs := &plugintest.Log{}
			p, err := build.New(t.Context(), build.Options{SrcDir: src, CacheDir: cache, Prebuilt: true, Log: zerolog.New(logs)})
			if err != nil {
				t.Fatal(err)
			}
			l, err := loader.New(loader.Options{Pipeline: p, Copies: func(string) int { return tt.copies }, Log: zerolog.New(logs)})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close(context.Background())
			h, err := l.Handler(t.Context(), name, "Hello", "GET")
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v; want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if body, _, err := h.Call(t.Context(), nil, nil); err != nil || body == "" {
				t.Errorf("call: %q, %v", body, err)
			}
			if len(logs.Events(map[string]any{"plugin": name, "message": "plugin copies loaded", "copies": float64(tt.copies)})) != 1 {
				t.Errorf("no 'plugin copies loaded' with %d copies:\n%s", tt.copies, logs)
			}
		})
	}
}
