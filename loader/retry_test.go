package loader

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
)

// newTestLoader is a loader over pluginPath for internal tests.
func newTestLoader(t *testing.T, pluginPath string, set func(*Options)) (*Loader, *plugintest.Log) {
	t.Helper()
	logs := &plugintest.Log{}
	opts := Options{
		SrcDir:    filepath.Join(pluginPath, "src"),
		CacheDir:  t.TempDir(),
		BuildWait: plugintest.BuildWait,
		Log:       zerolog.New(logs),
	}
	if set != nil {
		set(&opts)
	}
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l, logs
}

// pollUntil polls f until it holds or 20 s pass.
func pollUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTimedOutBuildBacksOff: a build that timed out is not restarted by
// every request: its failure stands until the backoff passes (then one
// retry, and a longer backoff) or the source changes.
func TestTimedOutBuildBacksOff(t *testing.T) {
	dir := plugintest.PluginPath(t)
	src := filepath.Join(dir, "src")
	plugintest.WriteFile(t, src, "slowbuild.go", plugintest.Unique(t, "package main\n\nfunc GETXHandler() string { return \"x\" }\n"))
	l, logs := newTestLoader(t, dir, func(o *Options) { o.BuildTimeout = time.Nanosecond })
	l.retryMin, l.retryMax = 300*time.Millisecond, time.Hour
	builds := func() int {
		return len(logs.Events(map[string]any{"plugin": "slowbuild", "message": "plugin build started"}))
	}
	request := func() error {
		_, err := l.Handler(context.Background(), "slowbuild", "X", "GET")
		if !errors.Is(err, ErrBuild) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a timed-out build", err)
		}
		return err
	}
	request()
	request()
	if n := builds(); n != 1 {
		t.Fatalf("two requests started %d builds, want 1: the timeout stands until the backoff passes", n)
	}
	pollUntil(t, "a retry after the backoff", func() bool { request(); return builds() == 2 })
	request()
	if n := builds(); n != 2 {
		t.Errorf("a request right after the retry built again (%d builds)", n)
	}
	if f := l.lookup("slowbuild").failure; f == nil || f.tries != 2 || time.Until(f.retry) < 500*time.Millisecond {
		t.Errorf("after two timeouts: %+v; want the second backoff, twice the first", f)
	}
	if i := l.List(); len(i) != 1 || i[0].State != StateFailed || i[0].LastError == "" {
		t.Errorf("listing = %+v; want the failure", i)
	}

	// A changed source is built at once, backoff or not.
	plugintest.WriteFile(t, src, "slowbuild.go", plugintest.Unique(t, "package main\n\nfunc GETXHandler() string { return \"y\" }\n"))
	request()
	if n := builds(); n != 3 {
		t.Errorf("a changed source was not built at once (%d builds)", n)
	}
}

// TestRefusedPrebuiltIsNotRehashed: a prebuilt library that was refused
// is not hashed again on every request; its verdict is remembered by
// path, size and modification time, so a replaced file is looked at anew.
func TestRefusedPrebuiltIsNotRehashed(t *testing.T) {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, dir, "old.so", "not a shared library")
	l, _ := newTestLoader(t, dir, nil)
	var hashed atomic.Int64
	l.onHash = func(path string) {
		if filepath.Base(path) == "old.so" {
			hashed.Add(1)
		}
	}
	for range 3 {
		if _, err := l.Handler(context.Background(), "old", "Hello", "GET"); !errors.Is(err, ErrOpen) {
			t.Fatalf("err = %v, want the library refused", err)
		}
	}
	if n := hashed.Load(); n != 1 {
		t.Errorf("three requests hashed the refused library %d times, want 1", n)
	}
	plugintest.WriteFile(t, dir, "old.so", "still not a shared library")
	if _, err := l.Handler(context.Background(), "old", "Hello", "GET"); !errors.Is(err, ErrOpen) {
		t.Fatalf("err = %v, want the library refused", err)
	}
	if n := hashed.Load(); n != 2 {
		t.Errorf("a replaced library was hashed %d times in all, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "old.so")); err != nil {
		t.Fatal(err)
	}
}
