package isolate_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/isolate"
	"github.com/plugind/plugind/loader"
)

// TestFolderOwnPackages: a folder plugin with a go.mod of its own whose
// code imports a package of its own module (testdata/deps/shopcart in
// lib/src/shop: example.com/shop importing example.com/shop/cart from
// lib/src/shop/cart) runs in a process as it runs in-process: its
// program compiles the package from the folder. An edit of the package
// alone, seen by the loader's watcher, replaces the process with one
// that serves the new code.
func TestFolderOwnPackages(t *testing.T) {
	_, env := plugintest.ModuleProxy(t) // hermetic: the go command fetches nothing
	h := newHarness(t, config{isolated: []string{"shop"}, trees: map[string]string{"shop": "deps/shopcart"}, goEnv: env, watch: true})
	const path = "/_PLUGIN/shop/Hello"
	if a := h.get(t, path); a.status != http.StatusOK || a.body != "example.com/shop/cart" {
		t.Fatalf("GET %s = %d %s; want 200 example.com/shop/cart", path, a.status, a.body)
	}
	before := h.m.Stat("shop").PIDs
	if len(before) != 1 {
		t.Fatalf("shop runs in %d processes; want 1", len(before))
	}

	want := "edited " + strconv.FormatInt(time.Now().UnixNano(), 10) // a program no cache has seen
	edited := time.Now()
	plugintest.WriteFile(t, filepath.Join(h.src, "shop", "cart"), "cart.go",
		"package cart\n\nfunc Hello() string { return "+strconv.Quote(want)+" }\n")
	select {
	case r := <-h.reloaded:
		if r.plugin != "shop" || r.err != nil {
			t.Fatalf("the watcher's reload: %s %v; want shop reloaded\n%s", r.plugin, r.err, h.log)
		}
		t.Logf("edit of cart/cart.go to the new process serving: %s (the watcher's quiet time, a build, a start)", time.Since(edited).Round(time.Millisecond))
	case <-time.After(plugintest.BuildWait):
		t.Fatalf("no reload within %s of an edit of cart/cart.go\n%s", plugintest.BuildWait, h.log)
	}
	if a := h.get(t, path); a.status != http.StatusOK || a.body != want {
		t.Fatalf("GET %s = %d %s after an edit of cart/cart.go; want 200 %s", path, a.status, a.body, want)
	}
	if after := h.m.Stat("shop").PIDs; len(after) != 1 || after[0] == before[0] {
		t.Errorf("processes %v after the reload, %v before; want one new one", after, before)
	}
}

// TestFolderOwnPackagesPrebuilt: the program plugind build makes
// (Manager.Build) of a folder plugin that imports a package of its own
// module is keyed and recorded by that package too. An edit of the
// package alone is a new program, and a prebuilt-mode Manager, which
// never builds, runs a program only for the package it was built from:
// after an edit nobody built, the plugin is not built (ErrNotBuilt,
// naming plugind build) rather than served from the old program.
func TestFolderOwnPackagesPrebuilt(t *testing.T) {
	_, env := plugintest.ModuleProxy(t) // hermetic: the go command fetches nothing
	pluginPath, cache := plugintest.PluginPath(t), t.TempDir()
	src := filepath.Join(pluginPath, "src")
	plugintest.CopyTree(t, "deps/shopcart", filepath.Join(src, "shop"))
	manager := func(prebuilt bool) *isolate.Manager {
		t.Helper()
		p, err := build.New(t.Context(), build.Options{SrcDir: src, CacheDir: cache, Prebuilt: prebuilt, Env: env, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		// As server.NewIsolated wires them.
		m, err := isolate.New(isolate.Options{Find: isolate.PipelineFinder(p), ModuleDir: p.ModuleDir(), CacheDir: cache, Prebuilt: p.Prebuilt(),
			Modules: p.ProcessModule, SourceHash: p.SourceHash, Env: p.GoEnv(), Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(context.Background()) })
		return m
	}
	builder, server := manager(false), manager(true)
	editCart := func(says string) {
		t.Helper()
		plugintest.WriteFile(t, filepath.Join(src, "shop", "cart"), "cart.go", "package cart\n\nfunc Hello() string { return "+strconv.Quote(says)+" }\n")
	}

	first, err := builder.Build(t.Context(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Built("shop"); err != nil {
		t.Fatalf("prebuilt mode, after plugind build: %v; want the program found", err)
	}
	edited := "edited " + strconv.FormatInt(time.Now().UnixNano(), 10) // a program no cache has seen
	editCart(edited)
	err = server.Built("shop")
	if !errors.Is(err, loader.ErrNotBuilt) || !strings.Contains(err.Error(), "plugind build shop") {
		t.Fatalf("prebuilt mode, after an edit of cart/cart.go nobody built: %v; want ErrNotBuilt naming plugind build shop", err)
	}
	second, err := builder.Build(t.Context(), "shop")
	if err != nil || second.Key == first.Key || second.Duration == 0 {
		t.Fatalf("Build after an edit of cart/cart.go: %+v, %v; want a new program built (was %.12s)", second, err, first.Key)
	}
	if err := server.Built("shop"); err != nil {
		t.Fatalf("prebuilt mode, after plugind build of the edit: %v; want the program found", err)
	}
	h, err := server.Resolve(t.Context(), "shop", "Hello", http.MethodGet)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/_PLUGIN/shop/Hello", nil)); err != nil || rec.Body.String() != edited {
		t.Fatalf("prebuilt mode serves %q (%v); want %q", rec.Body.String(), err, edited)
	}
}
