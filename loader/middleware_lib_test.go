package loader_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// TestMiddlewareLibPackageEditNeedsRestart: middleware loads once, at
// start. A loaded middleware that imports a package of lib/go.mod's
// module (lib/cart/) is warned about when the watcher sees the package
// change, as for an edit of its own source, and builds nothing; one that
// does not import it is not warned about.
func TestMiddlewareLibPackageEditNeedsRestart(t *testing.T) {
	if !plugintest.OwnProcess(t) { // it loads plugind.local/lib/cart: one version per process
		return
	}
	dir := plugintest.PluginPath(t)
	src, cart := filepath.Join(dir, "src"), filepath.Join(dir, "cart")
	mws := filepath.Join(src, build.MiddlewareDir)
	for _, d := range []string{cart, mws} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nonce := strconv.FormatInt(time.Now().UnixNano(), 10) // code no cache has seen
	cartSource := func(answer string) string {
		return "package cart\n\n// " + nonce + "\n//go:noinline\nfunc Name() string { return " + strconv.Quote(answer) + " }\n"
	}
	const middleware = `package main

import (
	"net/http"
%s)

func TagMiddlewareLoad(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tag", %s)
		next.ServeHTTP(w, r)
	})
}
`
	plugintest.WriteFile(t, dir, "go.mod", "module plugind.local/lib\n\ngo 1.26\n")
	plugintest.WriteFile(t, cart, "cart.go", cartSource("one"))
	plugintest.WriteFile(t, mws, "tagger.go", "// "+nonce+"\n"+fmt.Sprintf(middleware, "\n\t\"plugind.local/lib/cart\"\n", "cart.Name()"))
	plugintest.WriteFile(t, mws, "plain.go", "// "+nonce+"\n"+fmt.Sprintf(middleware, "", `"plain"`))
	plugintest.WriteFile(t, src, "v.go", versionSource(t, nonce, "v"))
	var mu sync.Mutex
	told := false
	l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
		b.CacheDir = t.TempDir()
		o.Reload = true
		o.Notify = func(ev loader.Event) {
			mu.Lock()
			defer mu.Unlock()
			told = told || (ev.Kind == loader.EventSourceChanged && ev.Plugin == "v")
		}
	})
	for _, file := range []string{"tagger", "plain"} {
		if _, err := l.Middleware(context.Background(), file, "Tag"); err != nil {
			t.Fatalf("middleware %s: %v\n%s", file, err, logs)
		}
	}
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	warnings := func(name string) int {
		return len(logs.Events(map[string]any{"plugin": name, "level": "warn", "message": "middleware source changed: middleware loads once, at start; restart the server to apply the change"}))
	}
	before := builds(logs, "middlewares/tagger")

	plugintest.WriteFile(t, cart, "cart.go", cartSource("two"))
	// Middleware is looked at before the plugins are told: once v is,
	// every warning the change gives has been given.
	eventually(t, "v to be told of the change", func() bool { mu.Lock(); defer mu.Unlock(); return told })
	if n := warnings("middlewares/tagger"); n != 1 {
		t.Errorf("%d restart warnings for middlewares/tagger, which imports the changed package; want 1\n%s", n, logs)
	}
	if n := warnings("middlewares/plain"); n != 0 {
		t.Errorf("%d restart warnings for middlewares/plain, which does not import the changed package; want none", n)
	}
	if n := builds(logs, "middlewares/tagger"); n != before {
		t.Errorf("%d builds of middlewares/tagger after the change, want %d: middleware loads once", n, before)
	}
}

// TestMiddlewareEmbeddedFileEditNeedsRestart: a file a loaded middleware
// embeds (//go:embed), in its folder or beside its single file in
// src/middlewares, is part of its build: an edit of it is warned about
// (restart to apply), as an edit of its source is, and builds nothing.
func TestMiddlewareEmbeddedFileEditNeedsRestart(t *testing.T) {
	dir := plugintest.PluginPath(t)
	mws := filepath.Join(dir, "src", build.MiddlewareDir)
	if err := os.MkdirAll(filepath.Join(mws, "tagger", "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	nonce := strconv.FormatInt(time.Now().UnixNano(), 10) // code no cache has seen
	const middleware = `package main

import (
	_ "embed"
	"net/http"
)

// %s
//go:embed %s
var tag string

func TagMiddlewareLoad(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tag", tag)
		next.ServeHTTP(w, r)
	})
}
`
	plugintest.WriteFile(t, filepath.Join(mws, "tagger"), "tagger.go", fmt.Sprintf(middleware, nonce, "static/tag.txt"))
	plugintest.WriteFile(t, filepath.Join(mws, "tagger", "static"), "tag.txt", "one")
	plugintest.WriteFile(t, mws, "plain.go", fmt.Sprintf(middleware, nonce, "plain.txt"))
	plugintest.WriteFile(t, mws, "plain.txt", "one")
	l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) { o.Reload = true })
	for _, file := range []string{"tagger", "plain"} {
		if _, err := l.Middleware(context.Background(), file, "Tag"); err != nil {
			t.Fatalf("middleware %s: %v\n%s", file, err, logs)
		}
	}
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, dir, file string }{
		{"middlewares/tagger", filepath.Join(mws, "tagger", "static"), "tag.txt"},
		{"middlewares/plain", mws, "plain.txt"},
	} {
		before := builds(logs, tt.name)
		plugintest.WriteFile(t, tt.dir, tt.file, "two")
		eventually(t, "the restart warning for "+tt.name, func() bool {
			return len(logs.Events(map[string]any{"plugin": tt.name, "level": "warn", "message": "middleware source changed: middleware loads once, at start; restart the server to apply the change"})) == 1
		})
		if n := builds(logs, tt.name); n != before {
			t.Errorf("%d builds of %s after the edit, want %d: middleware loads once", n, tt.name, before)
		}
	}
}
