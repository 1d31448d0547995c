package build_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
)

func TestBuildAheadOfTime(t *testing.T) {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "ahead.go",
		plugintest.Unique(t, "package main\n\nfunc GETAheadHandler() string { return \"a\" }\n"))
	cache := t.TempDir()
	l, logs := newPipeline(t, dir, func(o *build.Options) {
		o.CacheDir = cache
		o.LoadCheck = build.ExecLoadCheck(os.Args[0], 30*time.Second)
	})
	first, err := l.Build(context.Background(), "ahead")
	if err != nil || first.Duration == 0 {
		t.Fatalf("first build: %+v, %v", first, err)
	}
	if !exists(filepath.Join(cache, first.Key[:32]+".so.ok")) {
		t.Error("the artifact was not load-checked")
	}
	second, err := l.Build(context.Background(), "ahead")
	if err != nil || second.Duration != 0 || second.Key != first.Key {
		t.Errorf("second build: %+v, %v; want the cached artifact", second, err)
	}
	if len(logs.Events(map[string]any{"message": "plugin loaded"})) != 0 {
		t.Error("Build opened the plugin in this process")
	}
	if _, err := l.Build(context.Background(), "../x"); err == nil {
		t.Error("Build accepted a bad name")
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestPrune(t *testing.T) {
	cache := t.TempDir()
	now := time.Now()
	for i, name := range []string{"old.so", "mid.so", "new.so"} {
		plugintest.WriteFile(t, cache, name, string(make([]byte, 1000)))
		plugintest.WriteFile(t, cache, name+".ok", "")
		at := now.Add(time.Duration(i-3) * time.Hour)
		os.Chtimes(filepath.Join(cache, name), at, at)
	}
	p, _ := newPipeline(t, plugintest.PluginPath(t), func(o *build.Options) { o.CacheDir = cache })
	removed, freed, err := p.Prune(2000, nil)
	if err != nil || removed != 1 || freed != 1000 {
		t.Fatalf("Prune = %d, %d, %v; want 1, 1000", removed, freed, err)
	}
	if exists(filepath.Join(cache, "old.so")) || exists(filepath.Join(cache, "old.so.ok")) || !exists(filepath.Join(cache, "new.so")) {
		t.Error("Prune did not remove the least recently used artifact (and only it)")
	}
}

// TestCachedLooksWhereArtifactsLie: Cached finds a plugin's artifact
// where Artifact would take it from: a source's in the cache, prestd's
// prebuilt NAME.so beside the sources, with the toolchain or without
// (plugins.build = "off").
func TestCachedLooksWhereArtifactsLie(t *testing.T) {
	tests := []struct {
		name     string
		plugin   string
		prebuilt bool
		artifact bool // an artifact is put where Path says
		want     bool
	}{
		{name: "prestd library", plugin: "old", want: true},
		{name: "prestd library, prebuilt mode", plugin: "old", prebuilt: true, want: true},
		{name: "source with its artifact", plugin: "hello", artifact: true, want: true},
		{name: "source without one", plugin: "hello", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t, "hello")
			plugintest.WriteFile(t, dir, "old.so", "prestd's library, as it lies beside src")
			p, _ := newPipeline(t, dir, func(o *build.Options) {
				o.CacheDir, o.Prebuilt = t.TempDir(), tt.prebuilt
				if tt.prebuilt {
					o.Go = "/nonexistent/go"
				}
			})
			src, err := p.Find(tt.plugin)
			if err != nil {
				t.Fatal(err)
			}
			want, err := p.Key(src)
			if err != nil {
				t.Fatal(err)
			}
			if tt.artifact {
				plugintest.WriteFile(t, filepath.Dir(p.Path(src, want)), filepath.Base(p.Path(src, want)), "an artifact")
			}
			k, cached, err := p.Cached(tt.plugin)
			if err != nil || k != want || cached != tt.want {
				t.Errorf("Cached = %.12s, %v, %v; want %.12s, %v", k, cached, err, want, tt.want)
			}
		})
	}
}

func TestWarmUp(t *testing.T) {
	l, logs := newPipeline(t, plugintest.PluginPath(t), func(o *build.Options) { o.CacheDir = t.TempDir() })
	if err := l.WarmUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(logs.Events(map[string]any{"message": "build cache warm-up finished"})) != 1 {
		t.Errorf("no warm-up log: %s", logs)
	}
}

// TestCheckoutsShareACache: two checkouts of the server at different paths
// share a plugin cache (as CI's checkout shares a developer's). Built
// without -trimpath, package sdk from the other checkout is "a different
// version of package" to plugin.Open, so the other checkout's artifact of
// the same source must not be handed to this one.
func TestCheckoutsShareACache(t *testing.T) {
	other := t.TempDir()
	sdkFiles, _ := filepath.Glob(filepath.Join(plugintest.Root(), "sdk", "*.go"))
	if err := os.Mkdir(filepath.Join(other, "sdk"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := plugintest.Root()
	for _, f := range append([]string{filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")}, sdkFiles...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		plugintest.WriteFile(t, filepath.Join(other, filepath.Dir(rel)), filepath.Base(rel), string(data))
	}
	dir := plugintest.PluginPath(t, "sdkuser")
	cache := t.TempDir()
	checked := func(o *build.Options) {
		o.CacheDir = cache
		o.LoadCheck = build.ExecLoadCheck(os.Args[0], time.Minute)
	}
	elsewhere, elsewhereLogs := newPipeline(t, dir, func(o *build.Options) { checked(o); o.ModuleDir = other })
	warned := func(logs *plugintest.Log) bool {
		return slices.ContainsFunc(logs.Events(map[string]any{"level": "warn", "moduledir": other}), func(ev map[string]any) bool {
			return strings.Contains(fmt.Sprint(ev["message"]), "without -trimpath from another source tree")
		})
	}
	if !warned(elsewhereLogs) {
		t.Errorf("building plugins in another checkout went unwarned: %s", elsewhereLogs)
	}
	_, err := elsewhere.Build(context.Background(), "sdkuser")
	if err == nil || strings.Count(err.Error(), "different version of package github.com/plugind/plugind/sdk") != 1 || strings.Contains(err.Error(), cache) {
		t.Fatalf("a plugin built in another checkout: %v; want plugin.Open's refusal, said once and without the cache's path", err)
	}
	here, hereLogs := newPipeline(t, dir, checked)
	if len(hereLogs.Events(map[string]any{"level": "warn"})) != 0 {
		t.Errorf("a warning building in the server's own tree: %s", hereLogs)
	}
	if res, err := here.Build(context.Background(), "sdkuser"); err != nil || res.Duration == 0 {
		t.Fatalf("this checkout's build: %+v, %v; want a build of its own that loads", res, err)
	}
}
