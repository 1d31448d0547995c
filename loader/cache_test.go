package loader_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

func TestList(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello", "std", "badsig", "report")
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "broken.go",
		plugintest.Unique(t, "package main\n\nfunc GETXHandler() string { return 1 }\n"))
	l, _ := newLoader(t, dir)
	call(t, l, "hello", "Hello")
	call(t, l, "broken", "X")

	byName := map[string]loader.Info{}
	var names []string
	for _, i := range l.List() {
		byName[i.Name] = i
		names = append(names, i.Name)
	}
	if want := []string{"badsig", "broken", "hello", "report", "std"}; !slices.Equal(names, want) {
		t.Fatalf("listed %q, want %q", names, want)
	}
	hello := byName["hello"]
	if hello.State != loader.StateReady || hello.Kind != loader.KindFile || len(hello.Versions) != 1 || !hello.Versions[0].Current || hello.Bytes <= 0 || len(hello.Hash) != 16 {
		t.Errorf("hello = %+v", hello)
	}
	var handlers []string
	for _, h := range hello.Handlers {
		handlers = append(handlers, fmt.Sprintf("%s %s %s", h.Method, h.Func, h.ABI))
	}
	if want := []string{"GET Hello legacy", "GET HelloWithStatus legacy"}; !slices.Equal(handlers, want) {
		t.Errorf("hello handlers = %q, want %q", handlers, want)
	}
	if b := byName["broken"]; b.State != loader.StateFailed || b.LastError != `plugin "broken" failed to build` || b.FailedAt == nil {
		t.Errorf("broken = %+v", b)
	}
	if r := byName["report"]; r.State != loader.StateUnbuilt || r.Kind != loader.KindFolder || len(r.Handlers) != 1 {
		t.Errorf("report = %+v", r)
	}
	abis := map[string]loader.ABI{}
	for _, h := range byName["badsig"].Handlers {
		abis[h.Func] = h.ABI
	}
	if abis["Args"] != loader.ABIUnsupported || abis["Err"] != loader.ABIUnsupported || abis["Fine"] != loader.ABILegacy {
		t.Errorf("badsig ABIs = %v", abis)
	}
	for _, h := range byName["std"].Handlers {
		if h.ABI != loader.ABIStandard {
			t.Errorf("std handler %s has ABI %s", h.Symbol, h.ABI)
		}
	}
}

func TestBuildAheadOfTime(t *testing.T) {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "ahead.go",
		plugintest.Unique(t, "package main\n\nfunc GETAheadHandler() string { return \"a\" }\n"))
	cache := t.TempDir()
	l, logs := newLoaderWith(t, dir, func(o *loader.Options) {
		o.CacheDir = cache
		o.LoadCheck = loader.ExecLoadCheck(os.Args[0], 30*time.Second)
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
	l, _ := newLoaderWith(t, plugintest.PluginPath(t), func(o *loader.Options) { o.CacheDir = cache })
	removed, freed, err := l.Prune(2000)
	if err != nil || removed != 1 || freed != 1000 {
		t.Fatalf("Prune = %d, %d, %v; want 1, 1000", removed, freed, err)
	}
	if exists(filepath.Join(cache, "old.so")) || exists(filepath.Join(cache, "old.so.ok")) || !exists(filepath.Join(cache, "new.so")) {
		t.Error("Prune did not remove the least recently used artifact (and only it)")
	}
}

func TestWarmUp(t *testing.T) {
	l, logs := newLoaderWith(t, plugintest.PluginPath(t), func(o *loader.Options) { o.CacheDir = t.TempDir() })
	if err := l.WarmUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(logs.Events(map[string]any{"message": "build cache warm-up finished"})) != 1 {
		t.Errorf("no warm-up log: %s", logs)
	}
}

func TestFolderPluginGoModIsChecked(t *testing.T) {
	dir := plugintest.PluginPath(t, "report")
	folder := filepath.Join(dir, "src", "report")
	l, _ := newLoader(t, dir)
	// Versions that match the server's build, or modules it lacks, pass.
	plugintest.WriteFile(t, folder, "go.mod", "module example.com/report\n\ngo 1.26\n\nrequire example.com/unrelated v1.0.0\n")
	if _, err := call(t, l, "report", "Summary"); err != nil {
		t.Fatalf("a go.mod without conflicts: %v", err)
	}
	plugintest.WriteFile(t, folder, "go.mod", "module example.com/report\n\ngo 1.26\n\nrequire (\n\tgithub.com/rs/zerolog v1.30.0\n\tgolang.org/x/sync v0.1.0\n)\n")
	l2, _ := newLoader(t, dir)
	_, err := call(t, l2, "report", "Summary")
	if !errors.Is(err, loader.ErrIncompatible) ||
		!strings.Contains(err.Error(), "github.com/rs/zerolog v1.30.0 (the server has v") || !strings.Contains(err.Error(), "; golang.org/x/sync v0.1.0 (the server has v") {
		t.Errorf("conflicting go.mod: %v", err)
	}
}

func TestImportOfAModuleTheServerLacks(t *testing.T) {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "alien.go",
		"package main\n\nimport \"github.com/google/uuid\"\n\nfunc GETIDHandler() string { return uuid.NewString() }\n")
	l, logs := newLoader(t, dir)
	_, err := call(t, l, "alien", "ID")
	if !errors.Is(err, loader.ErrBuild) || !strings.Contains(err.Error(), "it imports github.com/google/uuid, which the server was not built with") {
		t.Errorf("err = %v", err)
	}
	if len(logs.Events(map[string]any{"message": "plugin build started"})) != 0 {
		t.Error("the compiler ran for an import the server cannot provide")
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
	checked := func(o *loader.Options) {
		o.CacheDir = cache
		o.LoadCheck = loader.ExecLoadCheck(os.Args[0], time.Minute)
	}
	elsewhere, elsewhereLogs := newLoaderWith(t, dir, func(o *loader.Options) { checked(o); o.ModuleDir = other })
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
	here, hereLogs := newLoaderWith(t, dir, checked)
	if len(hereLogs.Events(map[string]any{"level": "warn"})) != 0 {
		t.Errorf("a warning building in the server's own tree: %s", hereLogs)
	}
	if res, err := here.Build(context.Background(), "sdkuser"); err != nil || res.Duration == 0 {
		t.Fatalf("this checkout's build: %+v, %v; want a build of its own that loads", res, err)
	}
}
