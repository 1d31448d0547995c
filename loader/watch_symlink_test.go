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

// TestWatchFollowsSymlinkedDirectories: a directory linked into lib/
// from elsewhere (a package of lib/go.mod's module, a folder plugin, a
// package of a folder plugin) is watched where it is linked, as the go
// command builds through it: an edit in its target is told for the
// plugins it concerns. So is one linked after watching began, and one
// re-pointed at another target; a link to a parent directory makes no
// endless tree. Nothing is built: only the events are looked at.
func TestWatchFollowsSymlinkedDirectories(t *testing.T) {
	tests := []struct {
		name    string
		link    string // under the plugin path, to a directory elsewhere
		file    string // written in the target
		later   bool   // the link is made after watching began
		repoint bool   // the link is made to point elsewhere after watching began
		want    []string
	}{
		{name: "a package of lib/go.mod's module", link: "cart", file: "cart.go", want: []string{"f", "v"}},
		{name: "a file a package of lib/go.mod's module embeds", link: "cart", file: "page.html", want: []string{"f", "v"}},
		{name: "a folder plugin", link: "src/shop", file: "shop.go", want: []string{"shop"}},
		{name: "a folder plugin's own package", link: "src/f/cart", file: "cart.go", want: []string{"f"}},
		{name: "a package linked after watching began", link: "cart", file: "cart.go", later: true, want: []string{"f", "v"}},
		{name: "a folder plugin linked after watching began", link: "src/shop", file: "shop.go", later: true, want: []string{"shop"}},
		{name: "a package re-pointed", link: "cart", file: "cart.go", repoint: true, want: []string{"f", "v"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			src := filepath.Join(dir, "src")
			plugintest.WriteFile(t, dir, "go.mod", "module plugind.local/lib\n\ngo 1.22\n")
			plugintest.WriteFile(t, src, "v.go", versionSource(t, "", "v"))
			if err := os.MkdirAll(filepath.Join(src, "f"), 0o755); err != nil {
				t.Fatal(err)
			}
			plugintest.WriteFile(t, filepath.Join(src, "f"), "f.go", "package main\n\nfunc GETFHandler() string { return \"f\" }\n")
			// A link to lib/ itself, in lib/: walked, it would never end.
			if err := os.Symlink(dir, filepath.Join(dir, "loop")); err != nil {
				t.Fatal(err)
			}
			target := func() string {
				d := t.TempDir()
				plugintest.WriteFile(t, d, "shop.go", "package main\n\nfunc GETShopHandler() string { return \"shop\" }\n")
				plugintest.WriteFile(t, d, "cart.go", "package cart\n")
				return d
			}
			at, link := target(), filepath.Join(dir, filepath.FromSlash(tt.link))
			if !tt.later {
				if err := os.Symlink(at, link); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			changed := make(map[string]bool)
			l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
				b.CacheDir = filepath.Join(t.TempDir(), "artifacts")
				o.Reload = true
				o.Notify = func(ev loader.Event) {
					mu.Lock()
					defer mu.Unlock()
					switch ev.Kind {
					case loader.EventSourceChanged:
						changed[ev.Plugin] = true
					case loader.EventRegistered: // a plugin linked in later: found, not built
					default:
						t.Errorf("event %+v: nothing was requested, so nothing is built", ev)
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
			told := func(what string) {
				t.Helper()
				eventually(t, what, func() bool { return len(got()) >= len(tt.want) })
				if !slices.Equal(got(), tt.want) {
					t.Errorf("%s: source_changed for %v; want %v\n%s", what, got(), tt.want, logs)
				}
				mu.Lock()
				clear(changed)
				mu.Unlock()
			}
			switch {
			case tt.later:
				if err := os.Symlink(at, link); err != nil {
					t.Fatal(err)
				}
				told("the new link")
			case tt.repoint:
				at = target()
				tmp := link + ".new"
				if err := os.Symlink(at, tmp); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, link); err != nil { // ln -sfn
					t.Fatal(err)
				}
				told("the re-pointed link")
			}
			plugintest.WriteFile(t, at, tt.file, "// "+t.Name()+"\n")
			told("the edit behind the link")
		})
	}
}
