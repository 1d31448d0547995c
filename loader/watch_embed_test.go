package loader_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// TestWatchReloadsEmbeddedFiles: a file a plugin embeds (//go:embed) is
// part of its build: the real watcher sees an edit of it, the key
// changes, and the plugin is rebuilt and serves the new content. For a
// single-file plugin (a file beside it, a directory under the source
// directory), a folder plugin and a package of lib/go.mod's module it
// imports (rebuilt and loaded; see there for what it serves).
func TestWatchReloadsEmbeddedFiles(t *testing.T) {
	const embedder = "package main\n\nimport _ \"embed\"\n\n// %s\n//go:embed %s\nvar page string\n\nfunc GETPageHandler() string { return page }\n"
	tests := []struct {
		name   string
		plugin string
		files  map[string]string // under the plugin path; %s: a nonce
		edit   string            // the embedded file edited
		own    bool              // loads plugind.local/lib/web: in a process of its own
	}{
		{
			name: "a file beside a single-file plugin", plugin: "page",
			files: map[string]string{"src/page.go": fmt.Sprintf(embedder, "%s", "page.html")},
			edit:  "src/page.html",
		},
		{
			name: "a directory a single-file plugin embeds", plugin: "tpl",
			files: map[string]string{"src/tpl.go": fmt.Sprintf(embedder, "%s", "templates/page.tmpl")},
			edit:  "src/templates/page.tmpl",
		},
		{
			name: "a file a folder plugin embeds", plugin: "site",
			files: map[string]string{"src/site/site.go": fmt.Sprintf(embedder, "%s", "static/index.html")},
			edit:  "src/site/static/index.html",
		},
		{
			name: "a file a package of lib/go.mod's module embeds", plugin: "shop", own: true,
			files: map[string]string{
				"go.mod":      "module plugind.local/lib\n\ngo 1.26\n",
				"web/web.go":  "package web\n\nimport _ \"embed\"\n\n// %s\n//go:embed static/index.html\nvar Page string\n",
				"src/shop.go": "package main\n\nimport \"plugind.local/lib/web\"\n\n// %s\nfunc GETPageHandler() string { return web.Page }\n",
			},
			edit: "web/static/index.html",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.own && !plugintest.OwnProcess(t) {
				return
			}
			dir := plugintest.PluginPath(t)
			nonce := strconv.FormatInt(time.Now().UnixNano(), 10) // content no cache has seen
			write := func(rel, content string) {
				path := filepath.Join(dir, filepath.FromSlash(rel))
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				plugintest.WriteFile(t, filepath.Dir(path), filepath.Base(path), content)
			}
			for rel, content := range tt.files {
				write(rel, strings.ReplaceAll(content, "%s", nonce))
			}
			write(tt.edit, nonce+" one")
			l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
				b.CacheDir = t.TempDir()
				o.Reload = true
			})
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("logs:\n%s", logs)
				}
			})
			if err := l.Watch(); err != nil {
				t.Fatal(err)
			}
			if body, err := call(t, l, tt.plugin, "Page"); err != nil || body != nonce+" one" {
				t.Fatalf("GET %s/Page = %q, %v; want %q", tt.plugin, body, err, nonce+" one")
			}
			edited := time.Now()
			write(tt.edit, nonce+" two")
			if tt.own {
				// In-process, Go keeps the first version of
				// plugind.local/lib/web it loaded, data included, for
				// every plugin after (README): the new build is made
				// and loaded, and isolation = "process" serves it.
				eventually(t, "the edit of "+tt.edit+" to be built and loaded", func() bool {
					return len(logs.Events(map[string]any{"plugin": tt.plugin, "message": "plugin reloaded"})) == 1
				})
				return
			}
			eventually(t, "the edit of "+tt.edit+" to be served", func() bool {
				body, _ := call(t, l, tt.plugin, "Page")
				return body == nonce+" two"
			})
			t.Logf("edit of %s to the new version serving: %s", tt.edit, time.Since(edited).Round(time.Millisecond))
		})
	}
}

// TestWatchTellsOfVendoring: lib/vendor/modules.txt, which go mod vendor
// writes for a vendored lib/go.mod, is part of the build of every plugin
// declaring its requirements there: the watcher tells of a change to it,
// whether lib/vendor was there when watching began or was made later.
func TestWatchTellsOfVendoring(t *testing.T) {
	for _, made := range []bool{false, true} {
		t.Run(fmt.Sprintf("made later %v", made), func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			plugintest.WriteFile(t, dir, "go.mod", "module plugind.local/lib\n\ngo 1.22\n")
			plugintest.WriteFile(t, filepath.Join(dir, "src"), "v.go", versionSource(t, "", "v"))
			vendor := filepath.Join(dir, "vendor")
			if !made {
				if err := os.Mkdir(vendor, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			var mu sync.Mutex
			changed := make(map[string]bool)
			l, _ := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
				b.CacheDir = t.TempDir()
				o.Reload = true
				o.Notify = func(ev loader.Event) {
					mu.Lock()
					defer mu.Unlock()
					changed[ev.Plugin] = changed[ev.Plugin] || ev.Kind == loader.EventSourceChanged
				}
			})
			if err := l.Watch(); err != nil {
				t.Fatal(err)
			}
			told := func() []string {
				mu.Lock()
				defer mu.Unlock()
				return slices.Sorted(maps.Keys(changed))
			}
			if made {
				if err := os.Mkdir(vendor, 0o755); err != nil {
					t.Fatal(err)
				}
				eventually(t, "lib/vendor made to be told", func() bool { return len(told()) > 0 })
				mu.Lock()
				clear(changed)
				mu.Unlock()
			}
			plugintest.WriteFile(t, vendor, "modules.txt", "# example.com/x v1.0.0\n## explicit\nexample.com/x\n")
			eventually(t, "lib/vendor/modules.txt to be told", func() bool { return len(told()) > 0 })
			if got := told(); !slices.Equal(got, []string{"v"}) {
				t.Errorf("source_changed for %v; want [v]", got)
			}
		})
	}
}
