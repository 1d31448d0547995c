package loader_test

import (
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

// TestWatchTellsOfChanges: the watcher tells Notify of each change, once
// the files are quiet, with an event for the plugin it concerns, decided
// as for its own reloads: a file plugin's file, a folder plugin's file,
// go.mod or own package, one added after watching began included;
// lib/go.mod and lib/go.sum concern every plugin; a package of
// lib/go.mod's module (lib/cart/, lib/ itself, one added or moved away
// after watching began) concerns every plugin that declares its
// requirements there, not a folder with a go.mod of its own. Directories
// under lib/ that hold no package of that module are not watched. Nothing
// is built: the plugins were never requested, and what runs plugins
// elsewhere (the isolated plugins' manager) acts on the events.
func TestWatchTellsOfChanges(t *testing.T) {
	const module = "module plugind.local/lib\n\ngo 1.22\n"
	const (
		write = iota // file is written in dir
		mkdir        // dir is made after watching started, then file in it
		move         // dir is moved out of the plugin path; file is unused
		// unwatched: file is written in dir, then src/v.go: only v is
		// told, as the change in dir concerns no plugin
		unwatched
	)
	tests := []struct {
		name string
		dir  string // under the plugin path
		file string
		op   int
		want []string
	}{
		{"a file plugin's source", "src", "v.go", write, []string{"v"}},
		{"a folder plugin's file", "src/f", "f.go", write, []string{"f"}},
		{"a folder plugin's go.mod", "src/f", "go.mod", write, []string{"f"}},
		{"a folder plugin's own package", "src/f/cart", "cart.go", write, []string{"f"}},
		{"a package added to a folder plugin", "src/f/cart/fresh", "fresh.go", mkdir, []string{"f"}},
		{"lib/go.mod", ".", "go.mod", write, []string{"f", "g", "v"}},
		{"lib/go.sum", ".", "go.sum", write, []string{"f", "g", "v"}},
		{"a package of lib/go.mod's module", "cart", "cart.go", write, []string{"f", "v"}},
		{"a package of lib/go.mod's module in a package", "cart/sub", "sub.go", write, []string{"f", "v"}},
		{"a file removed from a package of lib/go.mod's module", "cart", "", write, []string{"f", "v"}},
		{"lib/go.mod's module's root package", ".", "lib.go", write, []string{"f", "v"}},
		{"a package added to lib/go.mod's module", "fresh", "fresh.go", mkdir, []string{"f", "v"}},
		{"a package moved away from lib/go.mod's module", "cart", "", move, []string{"f", "v"}},
		{"the artifact cache in lib/", "artifacts", "x.go", unwatched, []string{"v"}},
		{"a hidden directory in lib/", ".hidden", "x.go", unwatched, []string{"v"}},
		{"lib/vendor", "vendor/example.com/x", "x.go", unwatched, []string{"v"}},
		{"lib/testdata", "testdata", "x.go", unwatched, []string{"v"}},
		{"a module of its own in lib/", "nested", "x.go", unwatched, []string{"v"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			src := filepath.Join(dir, "src")
			plugintest.WriteFile(t, src, "v.go", versionSource(t, "", "v"))
			for _, d := range []string{"src/f/cart", "src/g", "cart/sub", "artifacts", ".hidden", "vendor/example.com/x", "testdata", "nested"} {
				if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(d)), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			plugintest.WriteFile(t, filepath.Join(src, "f"), "f.go", "package main\n\nfunc GETFHandler() string { return \"f\" }\n")
			plugintest.WriteFile(t, filepath.Join(src, "g"), "g.go", "package main\n\nfunc GETGHandler() string { return \"g\" }\n")
			plugintest.WriteFile(t, filepath.Join(src, "g"), "go.mod", "module g\n\ngo 1.22\n")
			plugintest.WriteFile(t, dir, "go.mod", module)
			plugintest.WriteFile(t, filepath.Join(dir, "cart"), "cart.go", "package cart\n")
			plugintest.WriteFile(t, filepath.Join(dir, "nested"), "go.mod", "module nested\n\ngo 1.22\n")
			var mu sync.Mutex
			changed := make(map[string]bool)
			var others []loader.Event
			l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
				b.CacheDir = filepath.Join(dir, "artifacts")
				o.Reload = true
				o.Notify = func(ev loader.Event) {
					mu.Lock()
					defer mu.Unlock()
					switch ev.Kind {
					case loader.EventSourceChanged:
						changed[ev.Plugin] = true
					case loader.EventRegistered: // a plugin made later: found, not built
					default:
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
			at := filepath.Join(dir, filepath.FromSlash(tt.dir))
			switch {
			case tt.op == mkdir:
				// The new directory is a change of its own; the file
				// written once that is told, later, must be seen too.
				if err := os.Mkdir(at, 0o755); err != nil {
					t.Fatal(err)
				}
				eventually(t, "the new directory to be told", func() bool { return len(got()) >= len(tt.want) })
				mu.Lock()
				clear(changed)
				mu.Unlock()
				plugintest.WriteFile(t, at, tt.file, "// "+t.Name()+"\n")
			case tt.op == move:
				if err := os.Rename(at, filepath.Join(t.TempDir(), "moved")); err != nil {
					t.Fatal(err)
				}
			case tt.file == "": // a removal
				if err := os.Remove(filepath.Join(at, "cart.go")); err != nil {
					t.Fatal(err)
				}
			default:
				plugintest.WriteFile(t, at, tt.file, "// "+t.Name()+"\n")
			}
			if tt.op == unwatched {
				// Told first, were it watched: its timer starts first.
				plugintest.WriteFile(t, src, "v.go", versionSource(t, "edited", "v"))
			}
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

// TestWatchReloadsLibPackageImporters: a single-file plugin importing a
// package of lib/go.mod's module (lib/cart/cart.go, imported as
// plugind.local/lib/cart) is rebuilt after an edit of the package alone,
// seen by the watcher. Go opens the new version beside the old one only
// if the package's export data is unchanged (a body it does not inline):
// the plugin then answers the new code. An edit Go refuses in a process
// that loaded the package before (an inlined body) leaves the last good
// version serving, and says why. Either way another plugin, whose key
// the edit does not change, is neither built again nor reloaded.
func TestWatchReloadsLibPackageImporters(t *testing.T) {
	tests := []struct {
		name   string
		inline bool   // cart.Hello may be inlined: its body is in the export data
		want   string // what shop answers after the edit
	}{
		{name: "a body Go does not inline", want: "two"},
		{name: "a body Go inlines", inline: true, want: "one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !plugintest.OwnProcess(t) { // it loads plugind.local/lib/cart: one version per process
				return
			}
			_, env := plugintest.ModuleProxy(t) // hermetic: the go command fetches nothing
			dir := plugintest.PluginPath(t)
			src, cart := filepath.Join(dir, "src"), filepath.Join(dir, "cart")
			if err := os.Mkdir(cart, 0o755); err != nil {
				t.Fatal(err)
			}
			nonce := strconv.FormatInt(time.Now().UnixNano(), 10) // code no cache has seen
			cartSource := func(answer string) string {
				pragma := "//go:noinline\n"
				if tt.inline {
					pragma = ""
				}
				return "package cart\n\n// " + nonce + "\n" + pragma + "func Hello() string { return " + strconv.Quote(answer) + " }\n"
			}
			plugintest.WriteFile(t, dir, "go.mod", "module plugind.local/lib\n\ngo 1.26\n")
			plugintest.WriteFile(t, cart, "cart.go", cartSource("one"))
			plugintest.WriteFile(t, src, "shop.go", "package main\n\nimport \"plugind.local/lib/cart\"\n\nfunc GETHelloHandler() string { return cart.Hello() }\n")
			plugintest.WriteFile(t, src, "v.go", versionSource(t, nonce, "v"))
			var mu sync.Mutex
			var events []loader.Event
			l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
				b.CacheDir, b.Env = t.TempDir(), env
				o.Reload = true
				o.Notify = func(ev loader.Event) {
					mu.Lock()
					defer mu.Unlock()
					events = append(events, ev)
				}
			})
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("logs:\n%s", logs)
				}
			})
			if err := l.Watch(); err != nil {
				t.Fatal(err)
			}
			if body, err := hello(t, l, "shop"); err != nil || body != "one" {
				t.Fatalf("GET shop/Hello = %q, %v; want one", body, err)
			}
			if body, err := call(t, l, "v", "V"); err != nil || body != "v" {
				t.Fatalf("GET v/V = %q, %v; want v", body, err)
			}
			builds := func(name string) int {
				return len(logs.Events(map[string]any{"plugin": name, "message": "plugin build started"}))
			}
			before := builds("shop")
			mu.Lock()
			seen := len(events)
			mu.Unlock()

			edited := time.Now()
			plugintest.WriteFile(t, cart, "cart.go", cartSource("two"))
			if tt.inline {
				eventually(t, "the refused version to be listed", func() bool { return info(t, l, "shop").LastError != "" })
				if e := info(t, l, "shop").LastError; !strings.Contains(e, "another version of package plugind.local/lib/cart") || !strings.Contains(e, "restart the server") || !strings.Contains(e, `isolation = "process"`) {
					t.Errorf("shop's last error %q; want Go's refusal of another plugind.local/lib/cart, with the fixes", e)
				}
			} else {
				eventually(t, "the edit of lib/cart/cart.go to be served", func() bool { b, _ := hello(t, l, "shop"); return b == "two" })
				t.Logf("edit of lib/cart/cart.go to the new version serving: %s", time.Since(edited).Round(time.Millisecond))
			}
			if body, err := hello(t, l, "shop"); err != nil || body != tt.want {
				t.Errorf("GET shop/Hello after the edit = %q, %v; want %s", body, err, tt.want)
			}
			if n := builds("shop") - before; n != 1 {
				t.Errorf("shop was built %d times after the edit; want once", n)
			}

			// The watcher's events are told before it brings the plugins
			// up to date: once shop's build is done, v's look is too.
			mu.Lock()
			defer mu.Unlock()
			told := false
			for _, ev := range events[seen:] {
				switch {
				case ev.Plugin == "v" && ev.Kind == loader.EventSourceChanged:
					told = true
				case ev.Plugin == "v":
					t.Errorf("event %+v for v after the edit: its key did not change, so it is not rebuilt nor reloaded", ev)
				}
			}
			if !told {
				t.Errorf("v was not told of the change: every plugin that declares lib/go.mod may import the package")
			}
		})
	}
}
