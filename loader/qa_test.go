package loader_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// TestReloadThatCannotBuildIsTold: an edit that the pipeline refuses
// before compiling (an import that neither the server nor lib/go.mod
// provides, a source that is no package main) leaves the last good
// version serving, as a compiler error does, and is told as one: a
// build_failed event naming the plugin (the dev console's "NAME: build
// failed" line, the admin page's build history) and a warning in the
// log. Before, the watcher's reload dropped the error: nothing was
// logged and the author saw no sign that the save did nothing.
func TestReloadThatCannotBuildIsTold(t *testing.T) {
	tests := []struct {
		name string
		edit string // the new source's body, after package main
		want string // in the event's error
	}{
		{
			name: "import no go.mod provides",
			edit: "import _ \"example.com/nowhere/missing\"\n\nfunc GETVHandler() string { return \"two\" }\n",
			want: "example.com/nowhere/missing",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			src := filepath.Join(dir, "src")
			nonce := fmt.Sprint(time.Now().UnixNano())
			plugintest.WriteFile(t, src, "v.go", fmt.Sprintf("// %s %s\npackage main\n\nfunc GETVHandler() string { return \"one\" }\n", t.Name(), nonce))

			var mu sync.Mutex
			var events []loader.Event
			logs := &plugintest.Log{}
			p, err := build.New(t.Context(), build.Options{SrcDir: src, CacheDir: plugintest.CacheDir(), Log: zerolog.New(logs)})
			if err != nil {
				t.Fatal(err)
			}
			l, err := loader.New(loader.Options{
				Pipeline:  p,
				BuildWait: plugintest.BuildWait,
				Reload:    true,
				Log:       zerolog.New(logs),
				Notify: func(ev loader.Event) {
					mu.Lock()
					events = append(events, ev)
					mu.Unlock()
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close(context.Background()) })
			if err := l.Watch(); err != nil {
				t.Fatal(err)
			}
			get := func() (string, error) {
				h, err := l.Handler(context.Background(), "v", "V", "GET")
				if err != nil {
					return "", err
				}
				body, _, err := h.Call(context.Background(), nil, nil)
				return body, err
			}
			if body, err := get(); err != nil || body != "one" {
				t.Fatalf("first version = %q, %v", body, err)
			}

			plugintest.WriteFile(t, src, "v.go", fmt.Sprintf("// %s %s\npackage main\n\n%s", t.Name(), nonce, tt.edit))
			failed := func() *loader.Event {
				mu.Lock()
				defer mu.Unlock()
				for i := range events {
					if events[i].Kind == loader.EventBuildFailed && events[i].Plugin == "v" {
						return &events[i]
					}
				}
				return nil
			}
			deadline := time.Now().Add(20 * time.Second)
			for failed() == nil {
				if time.Now().After(deadline) {
					mu.Lock()
					t.Fatalf("no build_failed event for the edit; events: %+v; log:\n%s", events, logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if ev := failed(); ev.Err == nil || !strings.Contains(ev.Err.Error(), tt.want) {
				t.Errorf("build_failed error = %v, want it to name %s", ev.Err, tt.want)
			}
			if len(logs.Events(map[string]any{"plugin": "v", "level": "warn"})) == 0 {
				t.Errorf("no warning naming the plugin in the log:\n%s", logs)
			}
			if body, err := get(); err != nil || body != "one" {
				t.Errorf("after the edit = %q, %v; want the last good version", body, err)
			}
		})
	}
}

// TestMethodsNoHandlerCanHave: a method no handler can be named after
// (lower case "get", "M-SEARCH", a long one) is answered as any method the
// plugin has no handler for: 405 with the methods it has for that
// function (the Allow header; RFC 9110 requires one with every 405), or
// 404 when the plugin or the function does not exist. It was a bare 405
// without Allow, for plugins that do not exist too.
func TestMethodsNoHandlerCanHave(t *testing.T) {
	dir := plugintest.PluginPath(t)
	src := filepath.Join(dir, "src")
	plugintest.WriteFile(t, src, "m.go", fmt.Sprintf("// %s %d\npackage main\n\nfunc GETXHandler() string { return \"get\" }\nfunc POSTXHandler() string { return \"post\" }\n", t.Name(), time.Now().UnixNano()))
	logs := &plugintest.Log{}
	p, err := build.New(t.Context(), build.Options{SrcDir: src, CacheDir: plugintest.CacheDir(), Log: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := loader.New(loader.Options{Pipeline: p, BuildWait: plugintest.BuildWait, Log: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })

	tests := []struct {
		plugin, fn, method string
		kind               error
		allowed            []string
	}{
		{"m", "X", "GET", nil, nil}, // the control: served
		{"m", "X", "get", loader.ErrMethodNotAllowed, []string{"GET", "HEAD", "POST"}},
		{"m", "X", "M-SEARCH", loader.ErrMethodNotAllowed, []string{"GET", "HEAD", "POST"}},
		{"m", "X", strings.Repeat("G", 100), loader.ErrMethodNotAllowed, []string{"GET", "HEAD", "POST"}},
		{"m", "Y", "get", loader.ErrNoHandler, nil},
		{"nosuch", "X", "get", loader.ErrNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.plugin+"/"+tt.fn+"/"+tt.method[:min(len(tt.method), 10)], func(t *testing.T) {
			h, err := l.Handler(context.Background(), tt.plugin, tt.fn, tt.method)
			if tt.kind == nil {
				if err != nil || h == nil {
					t.Fatalf("Handler = %v, %v; want the handler", h, err)
				}
				return
			}
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Handler = %v; want %v", err, tt.kind)
			}
			var e *loader.Error
			if !errors.As(err, &e) || !slices.Equal(e.Allowed, tt.allowed) {
				t.Errorf("Allowed = %v, want %v", e.Allowed, tt.allowed)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error of %d bytes: a long method must not be echoed whole", len(err.Error()))
			}
		})
	}
}
