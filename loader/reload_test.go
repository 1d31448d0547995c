package loader_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/modfile"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// newLoaderWith is newLoader with the pipeline's and the loader's
// options changed by set.
func newLoaderWith(t *testing.T, pluginPath string, set func(*build.Options, *loader.Options)) (*loader.Loader, *plugintest.Log) {
	t.Helper()
	logs := &plugintest.Log{}
	bopts := build.Options{
		SrcDir:   filepath.Join(pluginPath, "src"),
		CacheDir: plugintest.CacheDir(),
		Log:      zerolog.New(logs),
	}
	opts := loader.Options{
		BuildWait: plugintest.BuildWait,
		Log:       zerolog.New(logs),
	}
	set(&bopts, &opts)
	p, err := build.New(t.Context(), bopts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Pipeline = p
	l, err := loader.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l, logs
}

func call(t *testing.T, l *loader.Loader, name, fn string) (string, error) {
	t.Helper()
	h, err := l.Handler(context.Background(), name, fn, "GET")
	if err != nil {
		return "", err
	}
	body, _, err := h.Call(context.Background(), nil, nil)
	return body, err
}

// eventually polls f until it returns true or 20 s pass.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// versionSource is a plugin source answering answer, the test's own: with
// nonce "" the same in every run (the shared cache builds it once), with a
// new nonce one that no cache has seen (an edit that must be rebuilt).
func versionSource(t *testing.T, nonce, answer string) string {
	return fmt.Sprintf("// %s %s\npackage main\n\nfunc GETVHandler() string { return %q }\n", t.Name(), nonce, answer)
}

func TestHotReload(t *testing.T) {
	dir := plugintest.PluginPath(t)
	src := filepath.Join(dir, "src")
	// Version one only has to load: the shared cache serves it after the
	// first run. The edits are new in every run: an edit is rebuilt.
	nonce := fmt.Sprint(time.Now().UnixNano())
	plugintest.WriteFile(t, src, "v.go", versionSource(t, "", "one"))
	l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) { o.Reload = true })
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	if body, err := call(t, l, "v", "V"); err != nil || body != "one" {
		t.Fatalf("v1 = %q, %v", body, err)
	}

	// Callers keep calling through every change: none may fail.
	var calls, failures atomic.Int64
	var firstFailure atomic.Value
	stop := plugintest.Busy(4, func() {
		calls.Add(1)
		if body, err := call(t, l, "v", "V"); err != nil || (body != "one" && body != "two") {
			failures.Add(1)
			firstFailure.CompareAndSwap(nil, fmt.Sprintf("%q %v", body, err))
		}
	})

	plugintest.WriteFile(t, src, "v.go", versionSource(t, nonce, "two"))
	eventually(t, "the edit to be served", func() bool { b, _ := call(t, l, "v", "V"); return b == "two" })

	// A broken edit: the last good version keeps serving; the error is listed.
	plugintest.WriteFile(t, src, "v.go", versionSource(t, nonce, "two")+"func broken( {\n")
	eventually(t, "the failed build to be listed", func() bool { return info(t, l, "v").LastError != "" })
	if b, err := call(t, l, "v", "V"); b != "two" || err != nil {
		t.Errorf("after a broken edit: %q, %v; want the last good version", b, err)
	}

	// Reverting to the first content reuses the version already loaded:
	// Go could not load its package path twice.
	builds := len(logs.Events(map[string]any{"plugin": "v", "message": "plugin build started"}))
	plugintest.WriteFile(t, src, "v.go", versionSource(t, "", "one"))
	eventually(t, "the revert to be served", func() bool { b, _ := call(t, l, "v", "V"); return b == "one" })
	stop()

	if n := len(logs.Events(map[string]any{"plugin": "v", "message": "plugin build started"})); n != builds {
		t.Errorf("reverting ran %d builds, want none", n-builds)
	}
	i := info(t, l, "v")
	if len(i.Versions) != 2 || i.LastError != "" || i.State != loader.StateReady || !i.Versions[0].Current || i.Versions[1].Current {
		t.Errorf("listing after revert = %+v; want 2 versions, the first current, no error, ready", i)
	}
	if failures.Load() > 0 {
		t.Errorf("%d of %d calls failed during reloads, first: %v", failures.Load(), calls.Load(), firstFailure.Load())
	}
	t.Logf("%d calls during three reloads, %d failed", calls.Load(), failures.Load())
}

func info(t *testing.T, l *loader.Loader, name string) loader.Info {
	t.Helper()
	for _, i := range l.List() {
		if i.Name == name {
			return i
		}
	}
	t.Fatalf("%s not listed", name)
	return loader.Info{}
}

func TestReloadOffLoadsOnce(t *testing.T) {
	dir := plugintest.PluginPath(t)
	src := filepath.Join(dir, "src")
	// Sources of this test's own, the same in every run: the first loads
	// from the shared cache, and the edit, were it ever loaded, would
	// answer "two" whether built or cached.
	plugintest.WriteFile(t, src, "v.go", versionSource(t, "", "one"))
	l, _ := newLoader(t, dir)
	if err := l.Watch(); err == nil {
		t.Error("Watch started with reload off")
	}
	call(t, l, "v", "V")
	plugintest.WriteFile(t, src, "v.go", versionSource(t, "", "two"))
	time.Sleep(300 * time.Millisecond)
	if b, _ := call(t, l, "v", "V"); b != "one" {
		t.Errorf("with reload off the edit was loaded: %q", b)
	}
}

func TestRemovedSourceIsUnrouted(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	l, _ := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) { o.Reload = true })
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, l, "hello", "Hello"); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "src", "hello.go"))
	eventually(t, "the removed plugin to answer not found", func() bool {
		_, err := call(t, l, "hello", "Hello")
		return errors.Is(err, loader.ErrNotFound)
	})
}

func TestMemoryBudget(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("refuse=%v", refuse), func(t *testing.T) {
			dir := plugintest.PluginPath(t, "hello")
			src := filepath.Join(dir, "src")
			// A second plugin of this subtest's own to load: the shared
			// cache serves it after the first run.
			plugintest.WriteFile(t, src, "v.go", versionSource(t, "", "one"))
			l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
				o.MaxLoadedBytes, o.RefuseOverBudget = 1, refuse
			})
			if _, err := call(t, l, "hello", "Hello"); err != nil {
				t.Fatal(err) // the first load fits an empty process
			}
			_, err := call(t, l, "v", "V")
			warned := len(logs.Events(map[string]any{"message": "loaded plugins exceed the memory budget; Go cannot unload them: restart to free memory"}))
			if refuse {
				if !errors.Is(err, loader.ErrOverBudget) || !strings.Contains(err.Error(), "budget") {
					t.Errorf("over budget: err = %v, want ErrOverBudget", err)
				}
			} else if err != nil || warned != 1 {
				t.Errorf("over budget without refusal: err = %v, warnings %d; want a load and one warning", err, warned)
			}
			if l.LoadedBytes() <= 0 {
				t.Error("loaded bytes are not counted")
			}
		})
	}
}

func TestInitFailuresAreCaughtInAChild(t *testing.T) {
	// Most of it is waiting, on the hang's timeout above all: in
	// parallel with the other tests that wait (theirs, parallel ones,
	// share no plugin instance with it: hello is only opened, not called).
	t.Parallel()
	dir := plugintest.PluginPath(t, "initpanic", "inithang", "hello")
	// A hang can only be told by a timeout, kept short; the rest get one
	// a loaded CI machine cannot miss.
	patient, _ := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) { b.LoadCheck = build.ExecLoadCheck(os.Args[0], time.Minute) })
	hasty, _ := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
		b.LoadCheck = build.ExecLoadCheck(os.Args[0], 3*time.Second)
	})
	tests := []struct {
		l         *loader.Loader
		name, msg string

		detail string // the plugin's text, apart from the message
	}{
		{patient, "initpanic", `plugin "initpanic" cannot be loaded: an init function panicked`, "init exploded on purpose"},
		{hasty, "inithang", `plugin "inithang" cannot be loaded: opening it did not finish within 3s: an init function blocks`, ""},
	}
	for _, tt := range tests {
		_, err := call(t, tt.l, tt.name, "Hello")
		e := &loader.Error{}
		if !errors.Is(err, loader.ErrInit) || !errors.As(err, &e) || e.Msg != tt.msg || e.Detail != tt.detail {
			t.Errorf("%s: err = %v (detail %q)\nwant %s (detail %q)", tt.name, err, e.Detail, tt.msg, tt.detail)
		}
	}
	// Neither was opened here: this process still opens plugins.
	done := make(chan error, 1)
	go func() {
		_, err := patient.Handler(context.Background(), "hello", "Hello", "GET")
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("opening a plugin hangs after an init failure")
	}
}

// buildWith builds fixture into a .so with extra go build flags, in
// moduleDir, and returns its path. A file of this tree built in it is
// built where the go command links it only when it changed
// (plugintest.KeptBuild): the file must not be changed.
func buildWith(t *testing.T, moduleDir, file string, flags ...string) string {
	t.Helper()
	root := plugintest.Root()
	if moduleDir == root && strings.HasPrefix(file, root+string(filepath.Separator)) {
		return plugintest.KeptBuild(t, root, "x.so", []string{"GOWORK=off", "GOFLAGS=-mod=readonly"},
			append(append([]string{"-buildmode=plugin"}, flags...), file)...)
	}
	modFlag := "-mod=readonly"
	if moduleDir != root {
		modFlag = "-mod=mod" // a throw-away module: let go write its go.sum
	}
	out := filepath.Join(t.TempDir(), "x.so")
	args := append([]string{"build", "-buildmode=plugin", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, file)...)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS="+modFlag)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func TestCompatibility(t *testing.T) {
	host, err := build.HostBuildInfo()
	if err != nil {
		t.Fatal(err)
	}
	root := plugintest.Root()
	hello := filepath.Join(root, "lib", "src", "hello.go")
	same := buildWith(t, root, hello, host.Flags...)
	if diffs, err := build.Compatible(same, host); err != nil || len(diffs) != 0 {
		t.Fatalf("a plugin built like the server: %v %v", diffs, err)
	}

	// go build stamps a server built in a git checkout with a VCS version;
	// a plugin built in that tree records the module as "(devel)", and
	// must not be refused for it (its sdk source is in the key).
	stamped := host
	stamped.ModuleVersion = "v0.0.0-20261122111152-8efe79c8da45+dirty"
	withSDK := buildWith(t, root, filepath.Join(root, "testdata", "plugins", "sdkuser.go"), host.Flags...)
	if diffs, err := build.Compatible(withSDK, stamped); err != nil || len(diffs) != 0 {
		t.Errorf("an sdk plugin built in the tree of a VCS-stamped server: %v %v", diffs, err)
	}

	trim := buildWith(t, root, hello, append(host.Flags, "-trimpath")...)
	diffs, _ := build.Compatible(trim, host)
	if len(diffs) != 1 || diffs[0].String() != "-trimpath: plugin true, server (none)" {
		t.Errorf("built with -trimpath: %v", diffs)
	}

	// Another version of a module the server links (golang.org/x/sync).
	// Test binaries record no modules in their build information, so the
	// server's version is taken from go.mod, as a server binary records it.
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := modfile.Parse("go.mod", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	host.Deps = map[string]string{}
	for _, r := range gomod.Require {
		host.Deps[r.Mod.Path] = r.Mod.Version
	}
	mod := t.TempDir()
	plugintest.WriteFile(t, mod, "go.mod", "module example.com/oldsync\n\ngo 1.26\n\nrequire golang.org/x/sync v0.10.0\n")
	plugintest.WriteFile(t, mod, "p.go", "package main\n\nimport \"golang.org/x/sync/singleflight\"\n\nvar G singleflight.Group\n\nfunc GETHandler() string { return \"\" }\n")
	old := buildWith(t, mod, filepath.Join(mod, "p.go"), host.Flags...)
	diffs, _ = build.Compatible(old, host)
	want := fmt.Sprintf("module golang.org/x/sync: plugin v0.10.0, server %s", host.Deps["golang.org/x/sync"])
	if len(diffs) != 1 || diffs[0].String() != want {
		t.Errorf("other dependency version: %v\nwant %s", diffs, want)
	}

	// The loader refuses such an artifact with the differences named.
	dir := plugintest.PluginPath(t, "hello")
	cache := t.TempDir()
	l, _ := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) { b.CacheDir = cache })
	k, _, err := l.Pipeline().Cached("hello")
	if err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(trim)
	plugintest.WriteFile(t, cache, k[:32]+".so", string(data))
	_, err = call(t, l, "hello", "Hello")
	var e *loader.Error
	if !errors.Is(err, loader.ErrIncompatible) || !errors.As(err, &e) ||
		e.Msg != `plugin "hello" was built for a different server: -trimpath: plugin true, server (none); rebuild it with this server (plugind build hello)` {
		t.Errorf("err = %v", err)
	}
}

func TestLegacyQueueBounds(t *testing.T) {
	l, _ := newLoaderWith(t, plugintest.PluginPath(t, "slow"), func(b *build.Options, o *loader.Options) { o.LegacyWait = 150 * time.Millisecond })
	h, err := l.Handler(context.Background(), "slow", "Legacy", "GET")
	if err != nil {
		t.Fatal(err)
	}
	hung := make(chan struct{})
	go func() {
		defer close(hung)
		h.Call(context.Background(), nil, map[string][]string{"d": {"700ms"}})
	}()
	time.Sleep(50 * time.Millisecond) // the slow call holds the plugin

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	short, cancelShort := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancelShort()
	tests := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"wait bound", context.Background(), loader.ErrBusy},
		{"deadline in the queue", short, loader.ErrTimeout},
		{"client gone", cancelled, context.Canceled},
	}
	for _, tt := range tests {
		if _, _, err := h.Call(tt.ctx, nil, map[string][]string{"d": {"0s"}}); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	<-hung
	if body, _, err := h.Call(context.Background(), nil, map[string][]string{"d": {"0s"}}); err != nil || body != "slept" {
		t.Errorf("after the slow call: %q, %v", body, err)
	}
}

// TestPrebuiltLibrary is prestd's migration path: lib/NAME.so with no
// source, built by prestd's go-build.sh, loads after the compatibility
// check; one built with other flags is refused with the same error.
func TestPrebuiltLibrary(t *testing.T) {
	host, err := build.HostBuildInfo()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	for name, answer := range map[string]string{"good": "from a prebuilt library", "trimmed": "never"} {
		plugintest.WriteFile(t, work, name+".go", plugintest.Own(t, fmt.Sprintf("package main\n\nfunc GETHelloHandler() string { return %q }\n", answer)))
	}
	dir := plugintest.PluginPath(t)
	for name, flags := range map[string][]string{"good": host.Flags, "trimmed": append(host.Flags, "-trimpath")} {
		data, err := os.ReadFile(buildWith(t, plugintest.Root(), filepath.Join(work, name+".go"), flags...))
		if err != nil {
			t.Fatal(err)
		}
		plugintest.WriteFile(t, dir, name+".so", string(data))
	}
	l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
		b.CacheDir = t.TempDir()
		b.LoadCheck = build.ExecLoadCheck(os.Args[0], 30*time.Second)
	})
	if body, err := call(t, l, "good", "Hello"); err != nil || body != "from a prebuilt library" {
		t.Errorf("prebuilt: %q, %v", body, err)
	}
	if _, err := call(t, l, "trimmed", "Hello"); !errors.Is(err, loader.ErrIncompatible) || !strings.Contains(err.Error(), "-trimpath: plugin true, server (none)") {
		t.Errorf("prebuilt with other flags: %v", err)
	}
	if n := len(logs.Events(map[string]any{"message": "plugin build started"})); n != 0 {
		t.Errorf("a prebuilt library was built %d times", n)
	}
	if i := info(t, l, "good"); i.Kind != loader.KindPrebuilt || i.State != loader.StateReady {
		t.Errorf("listing: %+v", i)
	}
}

func TestBlockingInitIsNotWaitedForForever(t *testing.T) {
	l, _ := newLoaderWith(t, plugintest.PluginPath(t, "inithook"), func(b *build.Options, o *loader.Options) { o.HookTimeout = 200 * time.Millisecond })
	began := time.Now()
	_, err := call(t, l, "inithook", "Hello")
	if !errors.Is(err, loader.ErrInit) || !strings.Contains(err.Error(), "Init did not return within 200ms") || time.Since(began) > 30*time.Second {
		t.Errorf("a blocking Init: %v after %s", err, time.Since(began))
	}
	if i := info(t, l, "inithook"); i.Building {
		t.Error("the plugin stays building")
	}
}
