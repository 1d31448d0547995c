package loader_test

import (
	"context"
	"errors"
	"os"
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

// newLoader returns a loader over pluginPath with the shared artifact
// cache, logging into a buffer.
func newLoader(t *testing.T, pluginPath string) (*loader.Loader, *plugintest.Log) {
	t.Helper()
	logs := &plugintest.Log{}
	p, err := build.New(t.Context(), build.Options{
		SrcDir:   filepath.Join(pluginPath, "src"),
		CacheDir: plugintest.CacheDir(),
		Log:      zerolog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := loader.New(loader.Options{
		Pipeline:  p,
		BuildWait: plugintest.BuildWait,
		Log:       zerolog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l, logs
}

func builds(logs *plugintest.Log, plugin string) int {
	return len(logs.Events(map[string]any{"plugin": plugin, "message": "plugin build started"}))
}

func TestHandlers(t *testing.T) {
	l, _ := newLoader(t, plugintest.PluginPath(t, "hello", "status", "std", "badsig", "badglobal", "report"))
	tests := []struct {
		plugin, fn, method string
		abi                loader.ABI
		kind               error
		allowed            []string
		msg                string
	}{
		{plugin: "hello", fn: "Hello", method: "GET", abi: loader.ABILegacy},
		{plugin: "hello", fn: "HelloWithStatus", method: "GET", abi: loader.ABILegacy},
		{plugin: "hello", fn: "Hello", method: "HEAD", abi: loader.ABILegacy},
		{plugin: "std", fn: "Header", method: "GET", abi: loader.ABIStandard},
		{plugin: "report", fn: "Summary", method: "GET", abi: loader.ABILegacy},
		{plugin: "hello", fn: "Nope", method: "GET", kind: loader.ErrNoHandler, msg: "GETNopeHandler"},
		{plugin: "hello", fn: "Hello", method: "POST", kind: loader.ErrMethodNotAllowed, allowed: []string{"GET", "HEAD"}},
		{plugin: "status", fn: "Create", method: "GET", kind: loader.ErrMethodNotAllowed, allowed: []string{"POST", "DELETE"}},
		{plugin: "hello", fn: "Hello", method: "get", kind: loader.ErrMethodNotAllowed, allowed: []string{"GET", "HEAD"}},
		{plugin: "nosuch", fn: "Hello", method: "GET", kind: loader.ErrNotFound},
		{plugin: "../hello", fn: "Hello", method: "GET", kind: loader.ErrBadName},
		{plugin: "hello", fn: "Hel.lo", method: "GET", kind: loader.ErrBadName},
		{plugin: "badsig", fn: "Args", method: "GET", kind: loader.ErrSignature, msg: "GETArgsHandler has type func(int) string; want func() string, func() (string, int) or func(http.ResponseWriter, *http.Request)"},
		{plugin: "badsig", fn: "Err", method: "GET", kind: loader.ErrSignature, msg: "type func() error"},
		{plugin: "badsig", fn: "Var", method: "GET", kind: loader.ErrSignature, msg: "type *string"},
		{plugin: "badsig", fn: "Fine", method: "GET", abi: loader.ABILegacy},
		{plugin: "badglobal", fn: "Hello", method: "GET", kind: loader.ErrSignature, msg: "HTTPVars has type []string; want map[string]string"},
	}
	for _, tt := range tests {
		t.Run(tt.plugin+"/"+tt.method+tt.fn, func(t *testing.T) {
			h, err := l.Handler(context.Background(), tt.plugin, tt.fn, tt.method)
			if tt.kind != nil {
				if !errors.Is(err, tt.kind) {
					t.Fatalf("err = %v, want %v", err, tt.kind)
				}
				var e *loader.Error
				if !errors.As(err, &e) {
					t.Fatalf("err %T is not a *loader.Error", err)
				}
				if !slices.Equal(e.Allowed, tt.allowed) {
					t.Errorf("allowed = %q, want %q", e.Allowed, tt.allowed)
				}
				if !strings.Contains(e.Msg, tt.msg) {
					t.Errorf("message %q does not contain %q", e.Msg, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.ABI != tt.abi {
				t.Errorf("ABI = %s, want %s", h.ABI, tt.abi)
			}
		})
	}
}

func TestLegacyCall(t *testing.T) {
	l, _ := newLoader(t, plugintest.PluginPath(t, "hello", "panics", "status"))
	ctx := context.Background()

	h, err := l.Handler(ctx, "hello", "Hello", "GET")
	if err != nil {
		t.Fatal(err)
	}
	body, status, err := h.Call(context.Background(), map[string]string{"file": "hello", "func": "Hello"}, map[string][]string{"abc": {"123"}})
	want := `{"http_vars":{"file":"hello","func":"Hello"},"url_query":{"abc":["123"]},"msg":"Hello plugin caller!"}`
	if err != nil || status != 200 || body != want {
		t.Errorf("Call = %q, %d, %v; want %q, 200", body, status, err, want)
	}

	zero, err := l.Handler(ctx, "status", "Zero", "GET")
	if err != nil {
		t.Fatal(err)
	}
	if _, status, _ := zero.Call(context.Background(), nil, nil); status != 200 {
		t.Errorf("status 0 became %d, want 200", status)
	}

	boom, err := l.Handler(ctx, "panics", "Boom", "GET")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := l.Handler(ctx, "panics", "Ok", "GET")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // the lock must be released after each panic
		_, _, err := boom.Call(context.Background(), nil, nil)
		var e *loader.Error
		if !errors.Is(err, loader.ErrPanic) || !errors.As(err, &e) || len(e.Stack) == 0 || strings.Contains(e.Msg, "secret") {
			t.Fatalf("panic error = %#v; want ErrPanic with a stack and no panic value in Msg", err)
		}
		done := make(chan string)
		go func() { b, _, _ := ok.Call(context.Background(), nil, nil); done <- b }()
		select {
		case b := <-done:
			if b != `{"ok":true}` {
				t.Fatalf("after a panic, Ok = %q", b)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the plugin's lock was not released after a panic")
		}
	}
}

func TestFolderPluginUsesOnlyItsBuildFiles(t *testing.T) {
	l, _ := newLoader(t, plugintest.PluginPath(t, "report"))
	h, err := l.Handler(context.Background(), "report", "Summary", "GET")
	if err != nil {
		t.Fatal(err) // ignored.go or report_test.go would break the build
	}
	body, _, err := h.Call(context.Background(), nil, map[string][]string{"n": {"1", "2"}})
	if err != nil || body != `{"count":2,"joined":"1+2"}` {
		t.Errorf("Summary = %q, %v", body, err)
	}
}

// TestEqualSourcesAreTwoPlugins: two names with byte-for-byte equal
// sources are two plugins, each with its own instance: its own Settings
// and Secrets globals, its own Init, its own legacy lock. Loading one
// while the other serves is race-free.
func TestEqualSourcesAreTwoPlugins(t *testing.T) {
	// Names no other test uses: artifacts are shared through the cache,
	// and plugin.Open gives one process one instance per artifact.
	dir := plugintest.PluginPath(t)
	data, err := os.ReadFile(filepath.Join(plugintest.Root(), "testdata", "plugins", "hooks.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hooks1", "twin"} {
		plugintest.WriteFile(t, filepath.Join(dir, "src"), name+".go", string(data))
	}
	l, _ := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
		o.Settings = func(name string) (map[string]any, map[string]string) {
			if name == "hooks1" {
				return map[string]any{"greeting": "hello from hooks1"}, map[string]string{"token": "hooks1-only"}
			}
			return map[string]any{"greeting": "hello from " + name}, nil
		}
	})
	state := func(name string) string {
		body, err := call(t, l, name, "State")
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		return body
	}
	if got, want := state("hooks1"), `{"greeting":"hello from hooks1","has_token":true,"inits":1}`; got != want {
		t.Fatalf("hooks1 = %s, want %s", got, want)
	}
	// twin loads while hooks serves: its globals are its own.
	stop := plugintest.Busy(2, func() { state("hooks1") })
	twin := state("twin")
	stop()
	if want := `{"greeting":"hello from twin","has_token":false,"inits":1}`; twin != want {
		t.Errorf("twin = %s, want %s", twin, want)
	}
	if got, want := state("hooks1"), `{"greeting":"hello from hooks1","has_token":true,"inits":1}`; got != want {
		t.Errorf("hooks1 after twin loaded = %s, want %s", got, want)
	}
	if a, b := info(t, l, "hooks1").Hash, info(t, l, "twin").Hash; a == b {
		t.Errorf("both names have version %s: one artifact", a)
	}
}

func TestBuildFailureIsRememberedUntilTheSourceChanges(t *testing.T) {
	dir := plugintest.PluginPath(t)
	src := filepath.Join(dir, "src")
	broken := plugintest.Unique(t, "package main\n\nfunc GETFixHandler() string {\n\treturn undefinedThing\n}\n")
	plugintest.WriteFile(t, src, "fix.go", broken)
	l, logs := newLoader(t, dir)
	ctx := context.Background()

	for i := range 2 {
		_, err := l.Handler(ctx, "fix", "Fix", "GET")
		var e *loader.Error
		if !errors.Is(err, loader.ErrBuild) || !errors.As(err, &e) {
			t.Fatalf("call %d: err = %v, want ErrBuild", i, err)
		}
		if !strings.Contains(e.Output, "fix.go:5:9: undefined: undefinedThing") {
			t.Errorf("output %q lacks the diagnostic with file:line", e.Output)
		}
		if strings.Contains(e.Output, src) || strings.Contains(e.Msg, src) {
			t.Errorf("error shows the server's path: %q / %q", e.Msg, e.Output)
		}
	}
	if n := builds(logs, "fix"); n != 1 {
		t.Errorf("an unchanged broken source was built %d times, want 1", n)
	}

	plugintest.WriteFile(t, src, "fix.go", strings.Replace(broken, "undefinedThing", `"fixed"`, 1))
	h, err := l.Handler(ctx, "fix", "Fix", "GET")
	if err != nil {
		t.Fatalf("after the fix: %v", err)
	}
	if body, _, _ := h.Call(context.Background(), nil, nil); body != "fixed" {
		t.Errorf("fixed plugin answered %q", body)
	}
	if n := builds(logs, "fix"); n != 2 {
		t.Errorf("builds = %d, want 2", n)
	}
}

func TestConcurrentFirstRequestsBuildOnce(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "once.go",
		plugintest.Unique(t, "package main\n\nfunc GETOnceHandler() string { return \"once\" }\n"))
	l, logs := newLoader(t, dir)
	ctx := context.Background()
	if _, err := l.Handler(ctx, "hello", "Hello", "GET"); err != nil {
		t.Fatal(err)
	}

	const callers = 32
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			h, err := l.Handler(ctx, "once", "Once", "GET")
			if err == nil {
				if body, _, _ := h.Call(context.Background(), nil, nil); body != "once" {
					err = errors.New("wrong body " + body)
				}
			}
			errs <- err
		})
	}

	// While "once" builds, the loaded plugin answers without waiting.
	for builds(logs, "once") == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := l.Handler(ctx, "hello", "Hello", "GET"); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.Events(map[string]any{"plugin": "once", "message": "plugin build finished"})); n != 0 {
		t.Error("a request to a loaded plugin waited for another plugin's build")
	}

	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := builds(logs, "once"); n != 1 {
		t.Errorf("%d simultaneous first requests ran %d builds, want 1", callers, n)
	}
}

func TestCachedArtifactIsNotRebuilt(t *testing.T) {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "cached.go",
		plugintest.Unique(t, "package main\n\nfunc GETCachedHandler() string { return \"c\" }\n"))
	first, logs1 := newLoader(t, dir)
	if _, err := first.Handler(context.Background(), "cached", "Cached", "GET"); err != nil {
		t.Fatal(err)
	}
	second, logs2 := newLoader(t, dir) // a restarted server
	if _, err := second.Handler(context.Background(), "cached", "Cached", "GET"); err != nil {
		t.Fatal(err)
	}
	if builds(logs1, "cached") != 1 || builds(logs2, "cached") != 0 {
		t.Errorf("builds = %d then %d, want 1 then 0", builds(logs1, "cached"), builds(logs2, "cached"))
	}
	if ev := logs2.Events(map[string]any{"plugin": "cached", "message": "plugin loaded", "cached": true}); len(ev) != 1 {
		t.Errorf("the second loader did not load from the cache: %s", logs2)
	}
}

func TestWaitIsBoundedByContext(t *testing.T) {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "wait.go",
		plugintest.Unique(t, "package main\n\nfunc GETWaitHandler() string { return \"w\" }\n"))
	l, _ := newLoader(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := l.Handler(ctx, "wait", "Wait", "GET"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	// The build went on for later callers.
	if _, err := l.Handler(context.Background(), "wait", "Wait", "GET"); err != nil {
		t.Fatal(err)
	}
}

func TestDiscover(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello", "report")
	src := filepath.Join(dir, "src")
	for name, content := range map[string]string{
		"bad.name.go":   "package main",
		"hello_test.go": "package main",
		"go.mod":        "module x",
		"README.md":     "docs",
		".hidden.go":    "package main",
	} {
		plugintest.WriteFile(t, src, name, content)
	}
	if err := os.Mkdir(filepath.Join(src, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, _ := newLoader(t, dir)
	found, skipped, err := l.Discover()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range found {
		got = append(got, s.Name+":"+string(s.Kind))
	}
	if want := []string{"hello:file", "report:folder"}; !slices.Equal(got, want) {
		t.Errorf("found %q, want %q", got, want)
	}
	if want := []string{"bad.name.go"}; !slices.Equal(skipped, want) {
		t.Errorf("skipped %q, want %q", skipped, want)
	}
}

func TestAmbiguousSource(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello", "report")
	data, _ := os.ReadFile(filepath.Join(dir, "src", "hello.go"))
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "report.go", string(data))
	l, _ := newLoader(t, dir)
	_, err := l.Handler(context.Background(), "report", "Summary", "GET")
	if !errors.Is(err, loader.ErrBuild) || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("err = %v, want an ambiguity error", err)
	}
}
