package loader_test

import (
	"context"
	"errors"
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

// journalPath makes a plugin path with a copy of the journal fixture under
// each name, and returns it with the journal file the plugins write.
// Tests use names of their own: artifacts are shared through the cache,
// and plugin.Open gives one process one instance per artifact.
func journalPath(t *testing.T, names ...string) (dir, journal string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(plugintest.Root(), "testdata", "plugins", "journal.go"))
	if err != nil {
		t.Fatal(err)
	}
	dir = plugintest.PluginPath(t)
	for _, name := range names {
		plugintest.WriteFile(t, filepath.Join(dir, "src"), name+".go", string(data))
	}
	return dir, filepath.Join(t.TempDir(), "journal")
}

// journalSettings gives each plugin the journal, its name, and a hold
// file for those in hold.
func journalSettings(journal string, hold map[string]string) func(string) (map[string]any, map[string]string) {
	return func(name string) (map[string]any, map[string]string) {
		return map[string]any{"journal": journal, "name": name, "hold": hold[name]}, nil
	}
}

// lines reads the journal.
func lines(t *testing.T, journal string) []string {
	t.Helper()
	data, err := os.ReadFile(journal)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(data), " ", "_"))
}

// TestRevertWaitsForClose: a reload retires version 1 (its Close runs);
// reverting the source to version 1's content re-initialises that very
// instance (Go cannot load it twice), but only after its Close returned:
// Init never runs while Close does.
func TestRevertWaitsForClose(t *testing.T) {
	t.Parallel() // it waits on the watcher and on Close; its plugin is its own
	dir, journal := journalPath(t)
	src := filepath.Join(dir, "src")
	data, err := os.ReadFile(filepath.Join(plugintest.Root(), "testdata", "plugins", "journal.go"))
	if err != nil {
		t.Fatal(err)
	}
	// Both versions are this test's own and the same in every run: what
	// is tested is the order of Close and Init, not the builds, which the
	// shared cache spares after the first run.
	one := plugintest.Own(t, string(data))
	hold := filepath.Join(t.TempDir(), "release")
	l, logs := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
		o.Reload = true
		o.Settings = journalSettings(journal, map[string]string{"jv": hold})
	})
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	plugintest.WriteFile(t, src, "jv.go", one)
	id1, err := call(t, l, "jv", "ID")
	if err != nil {
		t.Fatal(err)
	}
	plugintest.WriteFile(t, src, "jv.go", one+"\n// two\n")
	eventually(t, "version 1's Close to start", func() bool { return slices.Contains(lines(t, journal), "close-start_jv_"+id1) })

	plugintest.WriteFile(t, src, "jv.go", one) // the revert, while version 1's Close holds
	waiting := func() bool {
		return len(logs.Events(map[string]any{"plugin": "jv", "message": "waiting for the version's last Init or Close to return"})) > 0
	}
	served := func() bool { id, _ := call(t, l, "jv", "ID"); return id == id1 }
	eventually(t, "the revert to wait for Close (or, wrongly, to be served)", func() bool { return waiting() || served() })
	plugintest.WriteFile(t, filepath.Dir(hold), "release", "")
	eventually(t, "the revert to be served", served)

	var got []string
	for _, line := range lines(t, journal) {
		if what, ok := strings.CutSuffix(line, "_jv_"+id1); ok {
			got = append(got, what)
		}
	}
	if want := []string{"init", "close-start", "close-end", "init"}; !slices.Equal(got, want) {
		t.Errorf("version 1's life = %q, want %q", got, want)
	}
}

// TestCloseStopsBackgroundWork: Close stops prebuilding (and watching,
// warming up) first and waits for it, then runs Close hooks: no Init
// runs after them, and every version initialised is closed.
func TestCloseStopsBackgroundWork(t *testing.T) {
	names := []string{"ja", "jb", "jc", "jd"}
	dir, journal := journalPath(t, names...)
	loaded := make(chan struct{}, len(names))
	l, _ := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
		o.Reload = true
		o.Settings = journalSettings(journal, nil)
		o.Notify = func(ev loader.Event) {
			if ev.Kind == loader.EventLoaded {
				loaded <- struct{}{}
			}
		}
	})
	for _, name := range names { // in the cache: Prebuild only opens and inits
		if _, err := l.Pipeline().Build(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	prebuilt := make(chan struct{})
	go func() {
		defer close(prebuilt)
		l.Prebuild(context.Background())
	}()
	<-loaded
	if err := l.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
	<-prebuilt
	after := lines(t, journal)
	first := slices.IndexFunc(after, func(s string) bool { return strings.HasPrefix(s, "close") })
	if first < 0 {
		t.Fatalf("no Close hook ran: %q", after)
	}
	for _, line := range after[first:] {
		if strings.HasPrefix(line, "init") {
			t.Errorf("Init after the Close hooks: %q", after)
			break
		}
	}
	for _, line := range after {
		if rest, ok := strings.CutPrefix(line, "init"); ok && !slices.Contains(after, "close-end"+rest) {
			t.Errorf("%s was initialised and never closed: %q", rest[1:], after)
		}
	}
	if err := l.WarmUp(context.Background()); !errors.Is(err, loader.ErrClosed) {
		t.Errorf("WarmUp after Close: %v, want ErrClosed", err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "src", "ja.go"))
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "jz.go", string(data))
	if _, err := l.Handler(context.Background(), "jz", "ID", "GET"); !errors.Is(err, loader.ErrClosed) {
		t.Errorf("a first request after Close: %v, want ErrClosed", err)
	}
	if now := lines(t, journal); !slices.Equal(now, after) {
		t.Errorf("plugin hooks ran after Close returned: %q", now[len(after):])
	}
}

// TestSlowCloseHookDoesNotStarveOthers: Close hooks run at once, each
// bounded by the hook timeout within the shutdown bound: a hook that
// blocks costs its own plugin, not the others' Close.
func TestSlowCloseHookDoesNotStarveOthers(t *testing.T) {
	t.Parallel() // it waits out a hook timeout; its plugins are its own
	names := []string{"ka", "kb", "kc", "kd"}
	dir, journal := journalPath(t, names...)
	never := filepath.Join(t.TempDir(), "never")
	l, _ := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
		o.HookTimeout = time.Second
		o.Settings = journalSettings(journal, map[string]string{"kb": never})
	})
	for _, name := range names {
		if _, err := call(t, l, name, "ID"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := l.Close(ctx)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), `"kb"`) || strings.Contains(err.Error(), `"ka"`) || strings.Contains(err.Error(), `"kc"`) || strings.Contains(err.Error(), `"kd"`) {
		t.Errorf("Close: %v; want kb's Close, alone, reported", err)
	}
	if took > 10*time.Second {
		t.Errorf("Close took %s: the blocking hook was not bounded by the hook timeout (1s)", took)
	}
	got := lines(t, journal)
	for _, name := range []string{"ka", "kc", "kd"} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "close-end_"+name+"_") }) {
			t.Errorf("%s's Close did not finish: %q", name, got)
		}
	}
}
