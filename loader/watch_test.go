package loader_test

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// TestWatchTellsOfChanges: the watcher tells Notify of each change, once
// the files are quiet, with an event for the plugin it concerns, decided
// as for its own reloads: a file plugin's file, a folder plugin's file,
// go.mod or own package, one added after watching began included;
// lib/go.mod and lib/go.sum concern every plugin. Nothing is
// built: the plugins were never requested, and what runs plugins
// elsewhere (the isolated plugins' manager) acts on the events.
func TestWatchTellsOfChanges(t *testing.T) {
	const module = "module plugind.local/lib\n\ngo 1.22\n"
	tests := []struct {
		name string
		dir  string // under the plugin path
		file string
		want []string
		// mkdir: dir is made after watching started, then file in it
		mkdir bool
	}{
		{"a file plugin's source", "src", "v.go", []string{"v"}, false},
		{"a folder plugin's file", "src/f", "f.go", []string{"f"}, false},
		{"a folder plugin's go.mod", "src/f", "go.mod", []string{"f"}, false},
		{"a folder plugin's own package", "src/f/cart", "cart.go", []string{"f"}, false},
		{"a package added to a folder plugin", "src/f/cart/fresh", "fresh.go", []string{"f"}, true},
		{"lib/go.mod", ".", "go.mod", []string{"f", "v"}, false},
		{"lib/go.sum", ".", "go.sum", []string{"f", "v"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			src := filepath.Join(dir, "src")
			plugintest.WriteFile(t, src, "v.go", versionSource(t, "", "v"))
			if err := os.MkdirAll(filepath.Join(src, "f", "cart"), 0o755); err != nil {
				t.Fatal(err)
			}
			plugintest.WriteFile(t, filepath.Join(src, "f"), "f.go", "package main\n\nfunc GETFHandler() string { return \"f\" }\n")
			plugintest.WriteFile(t, dir, "go.mod", module)
			var mu sync.Mutex
			changed := make(map[string]bool)
			var others []loader.Event
			l, logs := newLoaderWith(t, dir, func(_ *build.Options, o *loader.Options) {
				o.Reload = true
				o.Notify = func(ev loader.Event) {
					mu.Lock()
					defer mu.Unlock()
					if ev.Kind == loader.EventSourceChanged {
						changed[ev.Plugin] = true
					} else {
						others = append(others, ev)
					}
				}
			})
			if err := l.Watch(); err != nil {
				t.Fatal(err)
			}
			got := func() []string {
				mu.Lock()
				defer mu.Unlock()
				return slices.Sorted(maps.Keys(changed))
			}
			if tt.mkdir {
				// The new directory is a change of its own; the file
				// written once that is told, later, must be seen too.
				if err := os.Mkdir(filepath.Join(dir, tt.dir), 0o755); err != nil {
					t.Fatal(err)
				}
				eventually(t, "the new directory to be told", func() bool { return len(got()) >= len(tt.want) })
				mu.Lock()
				clear(changed)
				mu.Unlock()
			}
			plugintest.WriteFile(t, filepath.Join(dir, tt.dir), tt.file, "// "+t.Name()+"\n")
			eventually(t, "the change to be told", func() bool { return len(got()) >= len(tt.want) })
			if !slices.Equal(got(), tt.want) {
				t.Errorf("source_changed for %v; want %v", got(), tt.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(others) > 0 {
				t.Errorf("other events %+v: nothing was requested, so nothing is built\n%s", others, logs)
			}
		})
	}
}
