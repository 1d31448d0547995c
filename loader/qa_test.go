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

			l, logs, events := watchingLoader(t, dir)
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
			deadline := time.Now().Add(20 * time.Second)
			for events.count("v", loader.EventBuildFailed) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no build_failed event for the edit; events: %+v; log:\n%s", events.all(), logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if ev, _ := events.first("v", loader.EventBuildFailed); ev.Err == nil || !strings.Contains(ev.Err.Error(), tt.want) {
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
	l, _ := newLoaderWith(t, dir, func(*build.Options, *loader.Options) {})

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

// TestOneFailureOneEvent: a reload refused for a dependency conflict
// (lib/go.mod upgraded under the running plugin) is one failure, told
// once: a build_failed event (the build module's plan refused it), not a
// build_failed and a load_failed for the same attempt, which the dev
// console printed as two lines and the bus delivered as two events.
func TestOneFailureOneEvent(t *testing.T) {
	if !plugintest.OwnProcess(t) {
		return // versions are process-wide: this test loads greet v1.0.0
	}
	lib := filepath.Join(t.TempDir(), "lib")
	plugintest.CopyTree(t, "deps/lib-greet", lib)
	proxy, env := plugintest.ModuleProxy(t)

	events := &eventLog{}
	l, logs := newLoaderWith(t, lib, func(b *build.Options, o *loader.Options) {
		b.CacheDir, b.Env = t.TempDir(), env
		o.Reload, o.Notify = true, events.add
	})
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Handler(t.Context(), "greet", "Hello", "GET"); err != nil {
		t.Fatalf("first load: %v\n%s", err, logs)
	}
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(lib, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	// The bump, as `go get example.com/greet@v1.1.0` makes it.
	plugintest.WriteFile(t, lib, "go.sum", read("go.sum")+plugintest.Sums(t, proxy, "example.com/greet v1.1.0"))
	plugintest.WriteFile(t, lib, "go.mod", strings.Replace(read("go.mod"), "v1.0.0", "v1.1.0", 1))

	failures := func() (n int, kinds []loader.EventKind) {
		for _, ev := range events.all() {
			if ev.Plugin == "greet" && (ev.Kind == loader.EventBuildFailed || ev.Kind == loader.EventLoadFailed) {
				n++
				kinds = append(kinds, ev.Kind)
			}
		}
		return n, kinds
	}
	deadline := time.Now().Add(60 * time.Second)
	for n, _ := failures(); n == 0; n, _ = failures() {
		if time.Now().After(deadline) {
			t.Fatalf("the refused reload was not told\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The attempt is over once the log says the last version serves on.
	for len(logs.Events(map[string]any{"plugin": "greet", "message": "plugin reload failed; the last good version keeps serving"})) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no reload failure in the log\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, kinds := failures(); n != 1 {
		t.Errorf("one refused reload told %d times: %v", n, kinds)
	}
}
