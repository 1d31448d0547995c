package build_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/plugerr"
)

// TestDiscoverMiddleware: SRC/middlewares holds middleware, not an
// endpoint plugin: Discover skips it and Find refuses it;
// DiscoverMiddleware lists its files, folders and prestd's prebuilt
// SRC/../middlewares/NAME.so, named middlewares/NAME.
func TestDiscoverMiddleware(t *testing.T) {
	pp := plugintest.PluginPath(t, "hello")
	mw := filepath.Join(pp, "src", "middlewares")
	body := "package main\n"
	for _, dir := range []string{filepath.Join(mw, "folder"), filepath.Join(mw, "_hidden"), filepath.Join(pp, "middlewares")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	plugintest.WriteFile(t, mw, "file.go", body)
	plugintest.WriteFile(t, mw, "file_test.go", body)
	plugintest.WriteFile(t, mw, "bad.name.go", body)
	plugintest.WriteFile(t, filepath.Join(mw, "folder"), "main.go", body)
	plugintest.WriteFile(t, filepath.Join(mw, "_hidden"), "main.go", body)
	plugintest.WriteFile(t, filepath.Join(pp, "middlewares"), "lib.so", "a library")
	plugintest.WriteFile(t, filepath.Join(pp, "middlewares"), "file.so", "the source wins")
	p, _ := newPipeline(t, pp, func(o *build.Options) { o.Prebuilt = true })

	found, skipped, err := p.Discover()
	if err != nil || len(found) != 1 || found[0].Name != "hello" || len(skipped) != 0 {
		t.Errorf("Discover = %+v, %q, %v; want hello alone", found, skipped, err)
	}
	if _, err := p.Find(build.MiddlewareDir); !errors.Is(err, plugerr.ErrNotFound) {
		t.Errorf("Find(%s) = %v, want ErrNotFound", build.MiddlewareDir, err)
	}

	middleware, skipped, err := p.DiscoverMiddleware()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]build.Kind{}
	for _, s := range middleware {
		got[s.Name] = s.Kind
	}
	want := map[string]build.Kind{"middlewares/file": build.KindFile, "middlewares/folder": build.KindFolder, "middlewares/lib": build.KindPrebuilt}
	if len(got) != len(want) || got["middlewares/file"] != want["middlewares/file"] || got["middlewares/folder"] != want["middlewares/folder"] || got["middlewares/lib"] != want["middlewares/lib"] {
		t.Errorf("DiscoverMiddleware = %v, want %v", got, want)
	}
	if !slices.Equal(skipped, []string{"middlewares/bad.name.go"}) {
		t.Errorf("skipped %q", skipped)
	}
	for _, name := range []string{"middlewares/_hidden", "middlewares/", "middlewares/a/b", "middlewares/nosuch"} {
		if _, err := p.Find(name); !errors.Is(err, plugerr.ErrNotFound) {
			t.Errorf("Find(%q) = %v, want ErrNotFound", name, err)
		}
	}

	empty, _ := newPipeline(t, plugintest.PluginPath(t, "hello"), func(o *build.Options) { o.Prebuilt = true })
	if found, skipped, err := empty.DiscoverMiddleware(); err != nil || len(found)+len(skipped) != 0 {
		t.Errorf("without src/middlewares: %v, %q, %v; want nothing", found, skipped, err)
	}
}

// TestBuildMiddleware: plugind build's Build("middlewares/NAME") records
// an artifact a prebuilt-mode pipeline finds for that middleware, and for
// it alone: the endpoint plugin NAME stays unbuilt.
func TestBuildMiddleware(t *testing.T) {
	pp := plugintest.PluginPath(t)
	plugintest.Middleware(t, pp, "forms", "hello")
	plugintest.WriteFile(t, filepath.Join(pp, "src"), "hello.go", plugintest.Unique(t, "package main\n\nfunc GETHelloHandler() string { return \"hi\" }\n"))
	cache := t.TempDir()
	p, _ := newPipeline(t, pp, func(o *build.Options) { o.CacheDir = cache })
	res, err := p.Build(context.Background(), build.MiddlewareName("hello"))
	if err != nil {
		t.Fatal(err)
	}

	pre, _ := newPipeline(t, pp, func(o *build.Options) { o.CacheDir, o.Prebuilt = cache, true })
	src, err := pre.Find(build.MiddlewareName("hello"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := pre.Key(src)
	if err != nil || k != res.Key {
		t.Fatalf("prebuilt Key = %s, %v; want %s", k, err, res.Key)
	}
	if _, _, err := pre.Artifact(context.Background(), src, k, nil); err != nil {
		t.Errorf("prebuilt Artifact: %v", err)
	}
	endpoint, err := pre.Find("hello")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pre.Key(endpoint); !errors.Is(err, plugerr.ErrNotBuilt) {
		t.Errorf("the endpoint plugin hello: %v, want ErrNotBuilt", err)
	}
}
