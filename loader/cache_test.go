package loader_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
