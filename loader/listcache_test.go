package loader

import (
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
)

// TestListIsCached: List parses the sources once, not per call; an edit
// the watcher sees makes the next List look again, moves the generation
// and closes the change channel.
func TestListIsCached(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello", "report")
	src := filepath.Join(dir, "src")
	l, _ := newTestLoader(t, dir, func(_ *build.Options, o *Options) { o.Reload = true })
	var parsed atomic.Int64
	l.onParse = func(string) { parsed.Add(1) }
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	handlers := func(name string) []string {
		for _, i := range l.List() {
			if i.Name == name {
				var out []string
				for _, h := range i.Handlers {
					out = append(out, h.Symbol)
				}
				return out
			}
		}
		return nil
	}
	if got := handlers("hello"); !slices.Equal(got, []string{"GETHelloHandler", "GETHelloWithStatusHandler"}) {
		t.Fatalf("hello's handlers = %q", got)
	}
	first := parsed.Load()
	gen := l.ListGeneration()
	changed := l.ListChanged()
	for range 3 {
		handlers("hello")
	}
	if n := parsed.Load(); n != first {
		t.Errorf("three more listings parsed %d files; want none", n-first)
	}
	if l.ListGeneration() != gen {
		t.Error("listing moved the generation")
	}

	plugintest.WriteFile(t, src, "hello.go", "package main\n\nfunc GETOtherHandler() string { return \"\" }\n")
	select {
	case <-changed:
	case <-time.After(20 * time.Second):
		t.Fatal("no change reported after an edit")
	}
	if l.ListGeneration() == gen {
		t.Error("the generation did not move")
	}
	if got := handlers("hello"); !slices.Equal(got, []string{"GETOtherHandler"}) {
		t.Errorf("after the edit, hello's handlers = %q", got)
	}
	if parsed.Load() == first {
		t.Error("the edit was listed without parsing")
	}
}
