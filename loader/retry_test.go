package loader

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
)

// newTestLoader is a loader over pluginPath for internal tests.
func newTestLoader(t *testing.T, pluginPath string, set func(*build.Options, *Options)) (*Loader, *plugintest.Log) {
	t.Helper()
	logs := &plugintest.Log{}
	bopts := build.Options{
		SrcDir:   filepath.Join(pluginPath, "src"),
		CacheDir: t.TempDir(),
		Log:      zerolog.New(logs),
	}
	opts := Options{
		BuildWait: plugintest.BuildWait,
		Log:       zerolog.New(logs),
	}
	if set != nil {
		set(&bopts, &opts)
	}
	p, err := build.New(t.Context(), bopts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Pipeline = p
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
	l, logs := newTestLoader(t, dir, func(b *build.Options, _ *Options) { b.Timeout = time.Nanosecond })
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
