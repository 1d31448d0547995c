package build_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/plugerr"
)

// TestBuildChecksOneRunsPlugins: plugind build checks the plugins it
// builds in one run against each other, as a server loading them would:
// a plugin that declares a lower version of a module a plugin built
// before it carries is built with that version, one that needs a higher
// version is refused, naming both.
func TestBuildChecksOneRunsPlugins(t *testing.T) {
	tests := []struct {
		name  string
		order []string
		want  map[string]string // plugin -> the example.com/greet it carries
		err   string            // the second build's error, if refused
	}{
		{name: "aligned", order: []string{"shop", "greet"}, want: map[string]string{"shop": "v1.1.0", "greet": "v1.1.0"}},
		{name: "refused", order: []string{"greet", "shop"}, want: map[string]string{"greet": "v1.0.0"},
			err: `plugin "shop" needs example.com/greet v1.1.0, but plugin "greet" loaded v1.0.0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, env := plugintest.ModuleProxy(t)
			lib := filepath.Join(t.TempDir(), "lib")
			plugintest.CopyTree(t, "deps/lib-greet", lib)
			plugintest.CopyTree(t, "deps/shop", filepath.Join(lib, "src", "shop"))
			p, logs := newPipeline(t, lib, func(o *build.Options) { o.Env, o.CacheDir = env, t.TempDir() })
			for i, name := range tt.order {
				res, err := p.Build(t.Context(), name)
				if i == 1 && tt.err != "" {
					if !errors.Is(err, plugerr.ErrDependency) || !strings.Contains(err.Error(), tt.err) {
						t.Fatalf("%s: %v; want ErrDependency with %q", name, err, tt.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v\n%s", name, err, logs)
				}
				src, err := p.Find(name)
				if err != nil {
					t.Fatal(err)
				}
				mods, err := p.Modules(p.Path(src, res.Key))
				if err != nil {
					t.Fatal(err)
				}
				if got := mods["example.com/greet"]; got != tt.want[name] {
					t.Errorf("%s carries example.com/greet %q; want %s", name, got, tt.want[name])
				}
			}
		})
	}
}
