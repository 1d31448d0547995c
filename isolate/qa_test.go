package isolate_test

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/isolate"
	"github.com/plugind/plugind/loader"
)

// TestMethodsNoHandlerCanHaveAsInProcess: a method no handler can be
// named after ("get", a long one) is answered by an isolated plugin as by
// the in-process loader: 405 with the methods the plugin has for the
// function (the Allow header), or 404 for a plugin that does not exist;
// not a bare 405 without Allow.
func TestMethodsNoHandlerCanHaveAsInProcess(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	p, err := build.New(t.Context(), build.Options{SrcDir: filepath.Join(dir, "src"), CacheDir: plugintest.CacheDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := loader.New(loader.Options{Pipeline: p, BuildWait: plugintest.BuildWait, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(t.Context())
	m, err := isolate.New(isolate.Options{
		Find: isolate.SourceFinder(l), ModuleDir: l.ModuleDir(), CacheDir: plugintest.CacheDir(),
		Modules: p.ProcessModule, SourceHash: p.SourceHash, Env: p.GoEnv(),
		BuildWait: plugintest.BuildWait, Grace: 5 * time.Second, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(t.Context())
	tests := []struct {
		name, plugin, method string
		kind                 error
		allowed              []string
	}{
		{"lower-case method", "hello", "get", loader.ErrMethodNotAllowed, []string{"GET", "HEAD"}},
		{"method too long", "hello", strings.Repeat("G", loader.MaxMethodLen+1), loader.ErrMethodNotAllowed, []string{"GET", "HEAD"}},
		{"no such plugin", "nosuch", "get", loader.ErrNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, inErr := l.Handler(t.Context(), tt.plugin, "Hello", tt.method)
			_, isoErr := m.Resolve(t.Context(), tt.plugin, "Hello", tt.method)
			var in, iso *loader.Error
			if !errors.As(inErr, &in) || !errors.As(isoErr, &iso) || !errors.Is(inErr, tt.kind) || !errors.Is(isoErr, tt.kind) {
				t.Fatalf("in-process %v, isolated %v; want both %v", inErr, isoErr, tt.kind)
			}
			if !slices.Equal(in.Allowed, tt.allowed) || !slices.Equal(iso.Allowed, tt.allowed) {
				t.Errorf("allowed: in-process %v, isolated %v; want %v", in.Allowed, iso.Allowed, tt.allowed)
			}
			if iso.Plugin != in.Plugin || iso.Msg != in.Msg {
				t.Errorf("isolated %q (plugin %q); in-process %q (plugin %q)", iso.Msg, iso.Plugin, in.Msg, in.Plugin)
			}
		})
	}
}
