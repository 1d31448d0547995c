package isolate_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/isolate"
	"github.com/plugind/plugind/loader"
)

// TestBadNamesAsInProcess: a call whose plugin or function name cannot
// name a handler is refused by an isolated plugin's manager with
// the in-process loader's error (kind, plugin, message), before any
// source is looked for.
func TestBadNamesAsInProcess(t *testing.T) {
	dir := plugintest.PluginPath(t)
	p, err := build.New(t.Context(), build.Options{SrcDir: filepath.Join(dir, "src"), CacheDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := loader.New(loader.Options{Pipeline: p, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(t.Context())
	m, err := isolate.New(isolate.Options{Find: isolate.SourceFinder(l), ModuleDir: l.ModuleDir(), CacheDir: t.TempDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(t.Context())
	tests := []struct {
		name, plugin, fn, method string
		kind                     error
	}{
		{"plugin with a dot", "../etc", "Hello", "GET", loader.ErrBadName},
		{"plugin too long", strings.Repeat("a", loader.MaxNameLen+1), "Hello", "GET", loader.ErrBadName},
		{"empty function", "hello", "", "GET", loader.ErrBadName},
		{"function with a dash", "hello", "Hel-lo", "GET", loader.ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, inErr := l.Handler(t.Context(), tt.plugin, tt.fn, tt.method)
			_, isoErr := m.Resolve(t.Context(), tt.plugin, tt.fn, tt.method)
			var in, iso *loader.Error
			if !errors.As(inErr, &in) || !errors.As(isoErr, &iso) || !errors.Is(isoErr, tt.kind) {
				t.Fatalf("in-process %v, isolated %v; want both %v", inErr, isoErr, tt.kind)
			}
			if iso.Plugin != in.Plugin || iso.Msg != in.Msg {
				t.Errorf("isolated %q (plugin %q); in-process %q (plugin %q)", iso.Msg, iso.Plugin, in.Msg, in.Plugin)
			}
		})
	}
}
