package loader_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// eventLog collects a loader's events, for Options.Notify.
type eventLog struct {
	mu     sync.Mutex
	events []loader.Event
}

func (e *eventLog) add(ev loader.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
}

// count is how many events of kind plugin was told.
func (e *eventLog) count(plugin string, kind loader.EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.events {
		if ev.Plugin == plugin && ev.Kind == kind {
			n++
		}
	}
	return n
}

// first is plugin's first event of kind, if it was told one.
func (e *eventLog) first(plugin string, kind loader.EventKind) (loader.Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.events {
		if ev.Plugin == plugin && ev.Kind == kind {
			return ev, true
		}
	}
	return loader.Event{}, false
}

// all is every event told so far, in order.
func (e *eventLog) all() []loader.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.events)
}

// watchingLoader is a loader on dir with reload on and the watcher
// running; its events go to the returned log.
func watchingLoader(t *testing.T, dir string) (*loader.Loader, *plugintest.Log, *eventLog) {
	t.Helper()
	events := &eventLog{}
	l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
		o.Reload = true
		o.Notify = events.add
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	return l, logs, events
}

// listed is plugin name's listing, and whether it is listed.
func listed(l *loader.Loader, name string) (loader.Info, bool) {
	for _, i := range l.List() {
		if i.Name == name {
			return i, true
		}
	}
	return loader.Info{}, false
}

func notFound(t *testing.T, l *loader.Loader, name, fn string) bool {
	_, err := call(t, l, name, fn)
	return errors.Is(err, loader.ErrNotFound)
}

// TestRemovedFolderPlugin: a folder plugin whose folder is removed, or
// renamed, stops serving as a removed single file does: not found, a
// "plugin removed" log line and event naming it, and listed as removed
// (the version it loaded stays in memory), not as a plugin that could be
// built. A folder renamed is a new plugin under its new name: registered
// (logged once), and served.
func TestRemovedFolderPlugin(t *testing.T) {
	tests := []struct {
		name   string
		rename bool
	}{
		{name: "removed"},
		{name: "renamed", rename: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t, "report")
			src := filepath.Join(dir, "src")
			l, logs, events := watchingLoader(t, dir)
			if _, err := call(t, l, "report", "Summary"); err != nil {
				t.Fatalf("GET report/Summary: %v", err)
			}
			if tt.rename {
				if err := os.Rename(filepath.Join(src, "report"), filepath.Join(src, "report2")); err != nil {
					t.Fatal(err)
				}
			} else if err := os.RemoveAll(filepath.Join(src, "report")); err != nil {
				t.Fatal(err)
			}
			eventually(t, "report to answer not found", func() bool { return notFound(t, l, "report", "Summary") })
			if n := len(logs.Events(map[string]any{"plugin": "report", "message": "plugin removed: its source is gone"})); n != 1 {
				t.Errorf("%d \"plugin removed\" log lines for report; want 1", n)
			}
			if n := events.count("report", loader.EventRemoved); n != 1 {
				t.Errorf("%d removed events for report; want 1", n)
			}
			if i, ok := listed(l, "report"); !ok || i.State != loader.StateRemoved || len(i.Versions) != 1 || i.Versions[0].Current {
				t.Errorf("report listed %v as %+v; want state removed, with its one version, not current", ok, i)
			}
			if !tt.rename {
				return
			}
			eventually(t, "report2 to serve", func() bool { _, err := call(t, l, "report2", "Summary"); return err == nil })
			if i, ok := listed(l, "report2"); !ok || i.State != loader.StateReady {
				t.Errorf("report2 listed %v as %+v; want ready", ok, i)
			}
			if n := len(logs.Events(map[string]any{"plugin": "report2", "kind": "folder", "message": "plugin registered"})); n != 1 {
				t.Errorf("%d \"plugin registered\" log lines for report2; want 1", n)
			}
		})
	}
}

// TestRemovedPluginListing: once a plugin's source is gone, the listing
// no longer offers it as a plugin that could be built: one that loaded
// is listed as removed, with the versions still in memory; one that never
// loaded (its build failed) is not listed.
func TestRemovedPluginListing(t *testing.T) {
	tests := []struct {
		name   string
		source string
		want   loader.State // "": not listed
	}{
		{"loaded", "package main\n\nfunc GETVHandler() string { return \"v\" }\n", loader.StateRemoved},
		{"failed to build", "package main\n\nfunc GETVHandler() string { return 1 }\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			src := filepath.Join(dir, "src")
			plugintest.WriteFile(t, src, "v.go", plugintest.Unique(t, tt.source))
			l, _, events := watchingLoader(t, dir)
			_, err := call(t, l, "v", "V")
			if (err != nil) != (tt.want == "") {
				t.Fatalf("GET v/V: %v", err)
			}
			before, _ := listed(l, "v")
			if err := os.Remove(filepath.Join(src, "v.go")); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the removal to be seen", func() bool { return events.count("v", loader.EventSourceChanged) > 0 && notFound(t, l, "v", "V") })
			i, ok := listed(l, "v")
			switch {
			case tt.want == "" && ok:
				t.Errorf("v listed as %+v (before the removal: %+v); want it not listed", i, before)
			case tt.want != "" && (!ok || i.State != tt.want || len(i.Versions) != 1 || i.LastError != ""):
				t.Errorf("v listed %v as %+v; want %s with its version, no error", ok, i, tt.want)
			}
		})
	}
}

// TestAddedPluginIsRegistered: a plugin added while the watcher runs (a
// file, or a folder made first and given its file after) is logged as
// those found at start are by the server, "plugin registered" with its
// name and kind, once, edits after included; those found at start are
// not logged again. One removed and added again is logged again.
func TestAddedPluginIsRegistered(t *testing.T) {
	tests := []struct {
		name   string
		folder bool
	}{
		{name: "a file"},
		{name: "a folder", folder: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			src := filepath.Join(dir, "src")
			plugintest.WriteFile(t, src, "v.go", versionSource(t, "", "v"))
			_, logs, events := watchingLoader(t, dir)
			kind, at, file := "file", src, "w.go"
			if tt.folder {
				kind, at, file = "folder", filepath.Join(src, "w"), "w.go"
				if err := os.Mkdir(at, 0o755); err != nil {
					t.Fatal(err)
				}
				eventually(t, "the new folder to be seen", func() bool { return events.count("w", loader.EventSourceChanged) > 0 })
			}
			registered := func(name string) int {
				return len(logs.Events(map[string]any{"plugin": name, "message": "plugin registered"}))
			}
			seen := events.count("w", loader.EventSourceChanged)
			write := func(answer string) {
				t.Helper()
				plugintest.WriteFile(t, at, file, "package main\n\nfunc GETWHandler() string { return "+fmt.Sprintf("%q", answer)+" }\n")
				eventually(t, "the change to be seen", func() bool { return events.count("w", loader.EventSourceChanged) > seen })
				seen = events.count("w", loader.EventSourceChanged)
			}
			write("one")
			write("two") // an edit: no new registration
			if n := len(logs.Events(map[string]any{"plugin": "w", "kind": kind, "message": "plugin registered"})); n != 1 {
				t.Errorf("%d \"plugin registered\" log lines for w, kind %s; want 1", n, kind)
			}
			if n := registered("v"); n != 0 {
				t.Errorf("%d \"plugin registered\" log lines for v, found at start; want none from the loader (the server logs it)", n)
			}
			if n, m := events.count("w", loader.EventRegistered), events.count("v", loader.EventRegistered); n != 1 || m != 0 {
				t.Errorf("%d registered events for w and %d for v; want 1 and none", n, m)
			}
			if ev, _ := events.first("w", loader.EventRegistered); string(ev.Source) != kind {
				t.Errorf("w registered as %q, want %q", ev.Source, kind)
			}

			if err := os.Remove(filepath.Join(at, file)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the removal to be seen", func() bool { return events.count("w", loader.EventSourceChanged) > seen })
			seen = events.count("w", loader.EventSourceChanged)
			write("three")
			eventually(t, "w to be registered again", func() bool { return registered("w") >= 2 })
			if n := registered("w"); n != 2 {
				t.Errorf("%d \"plugin registered\" log lines for w after it was removed and added again; want 2", n)
			}
			if n := events.count("w", loader.EventRegistered); n != 2 {
				t.Errorf("%d registered events for w after it was removed and added again; want 2", n)
			}
		})
	}
}

// TestSourceDirGoesAndComesBack: the source directory moved away, or
// removed, unroutes its plugins; once it is back (moved back, or made
// again) they serve again and later edits are reloaded: the watcher
// watches it again.
func TestSourceDirGoesAndComesBack(t *testing.T) {
	tests := []struct {
		name string
		move bool
	}{
		{name: "moved away and back", move: true},
		{name: "removed and made again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := plugintest.PluginPath(t)
			src := filepath.Join(dir, "src")
			nonce := fmt.Sprint(time.Now().UnixNano())
			plugintest.WriteFile(t, src, "v.go", versionSource(t, nonce, "one"))
			l, _, events := watchingLoader(t, dir)
			if b, err := call(t, l, "v", "V"); err != nil || b != "one" {
				t.Fatalf("GET v/V = %q, %v; want one", b, err)
			}
			away := filepath.Join(dir, "src.away")
			if tt.move {
				if err := os.Rename(src, away); err != nil {
					t.Fatal(err)
				}
			} else if err := os.RemoveAll(src); err != nil {
				t.Fatal(err)
			}
			eventually(t, "v to answer not found", func() bool { return notFound(t, l, "v", "V") })
			if tt.move {
				if err := os.Rename(away, src); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.Mkdir(src, 0o755); err != nil {
					t.Fatal(err)
				}
				plugintest.WriteFile(t, src, "v.go", versionSource(t, nonce, "one"))
			}
			eventually(t, "v to serve again", func() bool { b, _ := call(t, l, "v", "V"); return b == "one" })
			plugintest.WriteFile(t, src, "v.go", versionSource(t, nonce, "two"))
			eventually(t, "the edit after the return to be served", func() bool { b, _ := call(t, l, "v", "V"); return b == "two" })
			if n := events.count("v", loader.EventRemoved); n != 1 {
				t.Errorf("%d removed events for v; want 1", n)
			}
			if i, ok := listed(l, "v"); !ok || i.State != loader.StateReady || !slices.ContainsFunc(i.Versions, func(v loader.VersionInfo) bool { return v.Current }) {
				t.Errorf("v listed %v as %+v; want ready", ok, i)
			}
		})
	}
}
