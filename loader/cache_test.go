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

func TestImportOfAModuleTheServerLacks(t *testing.T) {
	tests := []struct {
		name  string
		gomod bool // lib/go.mod exists, requiring nothing
		fix   string
	}{
		{"no lib/go.mod", false, `run "cd ` + "%s" + ` && go mod init plugind.local/%[1]s && go get github.com/google/uuid"`},
		{"lib/go.mod without it", true, `run "cd ` + "%s" + ` && go get github.com/google/uuid"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			if tt.gomod {
				plugintest.WriteFile(t, dir, "go.mod", "module plugind.local/lib\n\ngo 1.26\n")
			}
			plugintest.WriteFile(t, filepath.Join(dir, "src"), "alien.go",
				"package main\n\nimport \"github.com/google/uuid\"\n\nfunc GETIDHandler() string { return uuid.NewString() }\n")
			l, logs := newLoader(t, dir)
			_, err := call(t, l, "alien", "ID")
			want := "imports github.com/google/uuid, which neither the server nor " + filepath.Base(dir) + "/go.mod provides; declare it: " + fmt.Sprintf(tt.fix, filepath.Base(dir))
			if !errors.Is(err, loader.ErrDependency) || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v\nwant %s", err, want)
			}
			if len(logs.Events(map[string]any{"message": "plugin build started"})) != 0 {
				t.Error("the compiler ran for an import nothing provides")
			}
		})
	}
}
