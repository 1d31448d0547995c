package loader_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/bus"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// meetSource is testdata/plugins/meet.go answering version.
func meetSource(t *testing.T, version string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(plugintest.Root(), "testdata", "plugins", "meet.go"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(string(data), `const version = "one"`, fmt.Sprintf("const version = %q", version), 1)
}

// meetPath is a plugin path with meet.go as plugin name. Each test names
// its own: a plugin name is a package path of its own, so loaders of one
// test binary never share a copy's globals, and the artifacts stay
// cacheable across runs.
func meetPath(t *testing.T, name string) string {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(dir, "src"), name+".go", meetSource(t, "one"))
	return dir
}

// meeting is what GETMeetHandler answers.
type meeting struct {
	Copy     string   `json:"copy"`
	Inits    int      `json:"inits"`
	Version  string   `json:"version"`
	Greeting string   `json:"greeting"`
	Given    string   `json:"given"`
	Var      string   `json:"var"`
	Query    []string `json:"query"`
	Last     string   `json:"last"` // what the call noted in its Settings
}

// barrier answers the plugin calls that GET it once want of them have
// arrived, or once released; a call held longer than a bound gets 504.
type barrier struct {
	url     string
	want    int
	arrived chan struct{} // one per arrival
	met     chan struct{} // closed at the want-th arrival
	release func()
	gate    chan struct{} // closed by release

	mu sync.Mutex
	n  int
}

func newBarrier(t *testing.T, want int) *barrier {
	b := &barrier{want: want, arrived: make(chan struct{}, 128), met: make(chan struct{}), gate: make(chan struct{})}
	b.release = sync.OnceFunc(func() { close(b.gate) })
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	t.Cleanup(b.release) // before Close, which waits for held calls
	b.url = srv.URL
	return b
}

func (b *barrier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	if b.n++; b.n == b.want {
		close(b.met)
	}
	b.mu.Unlock()
	b.arrived <- struct{}{}
	select {
	case <-b.met:
	case <-b.gate:
	case <-time.After(20 * time.Second):
		http.Error(w, "the other calls never came", http.StatusGatewayTimeout)
	}
}

// waitArrivals waits for n arrivals at b, at most 20 s.
func (b *barrier) waitArrivals(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for range n {
		select {
		case <-b.arrived:
		case <-timeout:
			t.Fatalf("fewer than %d calls reached the barrier", n)
		}
	}
}

// meet calls h n times at once, call i with HTTPVars n=i and URLQuery
// n=i, each first meeting the others at b, and returns what each call
// answered, in order.
func meet(t *testing.T, h *loader.Handler, n int, b *barrier) ([]meeting, []error) {
	t.Helper()
	got, errs := make([]meeting, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s := strconv.Itoa(i)
			body, _, err := h.Call(context.Background(), map[string]string{"n": s}, map[string][]string{"n": {s}, "at": {b.url}})
			if err == nil {
				if err = json.Unmarshal([]byte(body), &got[i]); err != nil {
					err = fmt.Errorf("answer %q: %w", body, err)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return got, errs
}

// checkMeetings checks that every call succeeded in a copy of its own,
// initialised once, with the settings, and saw its own globals
// throughout; it returns the copies.
func checkMeetings(t *testing.T, got []meeting, errs []error, version string) []string {
	t.Helper()
	var copies []string
	for i, m := range got {
		want := strconv.Itoa(i)
		switch {
		case errs[i] != nil:
			t.Errorf("call %d: %v", i, errs[i])
		case m.Given != want || m.Var != want || !slices.Equal(m.Query, []string{want}) || m.Last != want:
			t.Errorf("call %d saw HTTPVars %q then %q, URLQuery %q, noted %q in Settings: another call's globals", i, m.Given, m.Var, m.Query, m.Last)
		case m.Inits != 1 || m.Greeting != "hi" || m.Version != version:
			t.Errorf("call %d: copy %s initialised %d times, greeting %q, version %q; want once, \"hi\", %q", i, m.Copy, m.Inits, m.Greeting, m.Version, version)
		}
		copies = append(copies, m.Copy)
	}
	slices.Sort(copies)
	return slices.Compact(copies)
}

// TestCopiesSpreadCalls: with copies = N, N prestd-ABI calls run at once,
// each in a copy of its own with its own globals, every copy initialised
// with the settings; call N+1 waits for a free copy, and gets ErrBusy
// past the legacy wait. copies = 1 is one call at a time, as without.
func TestCopiesSpreadCalls(t *testing.T) {
	for _, copies := range []int{1, 2, 4} {
		t.Run(fmt.Sprint("copies=", copies), func(t *testing.T) {
			name := fmt.Sprint("meet", copies)
			l, logs := newLoaderWith(t, meetPath(t, name), func(b *build.Options, o *loader.Options) {
				o.LegacyWait = 300 * time.Millisecond
				o.Copies = func(string) int { return copies }
				o.Settings = func(string) (map[string]any, map[string]string) { return map[string]any{"greeting": "hi"}, nil }
			})
			h, err := l.Handler(context.Background(), name, "Meet", "GET")
			if err != nil {
				t.Fatal(err)
			}

			// N calls meet: each holds its copy until all N are in.
			got, errs := meet(t, h, copies, newBarrier(t, copies))
			if distinct := checkMeetings(t, got, errs, "one"); len(distinct) != copies {
				t.Errorf("%d calls ran in %d copies %v; want %d", copies, len(distinct), distinct, copies)
			}

			// Every copy busy: the next call waits, and gives up.
			held := newBarrier(t, copies+1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				got, errs := meet(t, h, copies, held)
				checkMeetings(t, got, errs, "one")
			}()
			held.waitArrivals(t, copies)
			if _, _, err := h.Call(context.Background(), nil, nil); !errors.Is(err, loader.ErrBusy) {
				t.Errorf("call with every copy busy: err = %v; want ErrBusy", err)
			}
			held.release()
			<-done
			if body, _, err := h.Call(context.Background(), nil, nil); err != nil || !strings.Contains(body, `"version":"one"`) {
				t.Errorf("call after the copies were freed: %q, %v", body, err)
			}

			loaded := logs.Events(map[string]any{"plugin": name, "message": "plugin copies loaded"})
			if want := min(copies-1, 1); len(loaded) != want {
				t.Errorf("%d 'plugin copies loaded' lines; want %d", len(loaded), want)
			}
			if i := info(t, l, name); i.Bytes != l.LoadedBytes() || len(i.Versions) != 1 {
				t.Errorf("listed %d bytes in %d versions; want the %d loaded, one version", i.Bytes, len(i.Versions), l.LoadedBytes())
			}
		})
	}
}

// TestCopiesReload: a reload swaps every copy at once: the new version's
// calls run in new copies, each initialised, and every old copy's Close
// runs.
func TestCopiesReload(t *testing.T) {
	const name, copies = "meetreload", 2
	dir := meetPath(t, name)
	closelog := filepath.Join(t.TempDir(), "closed")
	l, _ := newLoaderWith(t, dir, func(b *build.Options, o *loader.Options) {
		o.Reload = true
		o.Copies = func(string) int { return copies }
		o.Settings = func(string) (map[string]any, map[string]string) {
			return map[string]any{"greeting": "hi", "closelog": closelog}, nil
		}
	})
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	h, err := l.Handler(context.Background(), name, "Meet", "GET")
	if err != nil {
		t.Fatal(err)
	}
	got, errs := meet(t, h, copies, newBarrier(t, copies))
	old := checkMeetings(t, got, errs, "one")

	plugintest.WriteFile(t, filepath.Join(dir, "src"), name+".go", meetSource(t, "two"))
	eventually(t, "the edit to be served", func() bool {
		b, _ := call(t, l, name, "Meet")
		return strings.Contains(b, `"version":"two"`)
	})
	h, err = l.Handler(context.Background(), name, "Meet", "GET")
	if err != nil {
		t.Fatal(err)
	}
	got, errs = meet(t, h, copies, newBarrier(t, copies))
	cur := checkMeetings(t, got, errs, "two")
	if len(old) != copies || len(cur) != copies || slices.ContainsFunc(cur, func(c string) bool { return slices.Contains(old, c) }) {
		t.Errorf("copies before the reload %v, after %v; want %d each, none shared", old, cur, copies)
	}
	eventually(t, "every old copy's Close", func() bool {
		data, _ := os.ReadFile(closelog)
		closed := strings.Fields(string(data))
		slices.Sort(closed)
		return slices.Equal(closed, old)
	})
}

// TestCopiesBus: copies register on the bus once: copy 0's Init's
// listener and handler are the plugin's, the other copies' are
// discarded, so an event is delivered once and a query has one handler.
func TestCopiesBus(t *testing.T) {
	const name = "meetbus"
	var mu sync.Mutex
	delivered := -1
	b := bus.New(func(m bus.Message) {
		if m.Name == "meet.ping" {
			mu.Lock()
			delivered = m.Delivered
			mu.Unlock()
		}
	})
	l, _ := newLoaderWith(t, meetPath(t, name), func(_ *build.Options, o *loader.Options) {
		o.Copies = func(string) int { return 3 }
		o.Bus = b
	})
	if _, err := l.Handler(context.Background(), name, "Meet", "GET"); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), "meet.ping", []byte(`"x"`)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if delivered != 1 {
		t.Errorf("meet.ping delivered to %d listeners; want 1", delivered)
	}
	if who, err := b.Dispatch(context.Background(), "meet.who", []byte(`"x"`)); err != nil || len(who) < 3 {
		t.Errorf("meet.who = %s, %v; want a copy's name", who, err)
	}
}

// TestCopiesIgnored: copies are for prestd's ABI; a plugin with only
// standard handlers loads once, with a warning naming it.
func TestCopiesIgnored(t *testing.T) {
	l, logs := newLoaderWith(t, plugintest.PluginPath(t, "std"), func(_ *build.Options, o *loader.Options) {
		o.Copies = func(string) int { return 4 }
	})
	if _, err := l.Handler(context.Background(), "std", "Header", "GET"); err != nil {
		t.Fatal(err)
	}
	if len(logs.Events(map[string]any{"plugin": "std", "level": "warn", "message": "plugin copies ignored: loading one copy"})) != 1 {
		t.Errorf("no warning that copies are ignored for a standard-ABI plugin:\n%s", logs)
	}
	if len(logs.Events(map[string]any{"plugin": "std", "message": "plugin copies loaded"})) != 0 {
		t.Error("copies of a standard-ABI plugin were loaded")
	}
}

// TestCopiesBudget: every copy counts against the memory budget: with
// refusal on, a copy past it fails the version, as another version would.
func TestCopiesBudget(t *testing.T) {
	const name = "meetbudget"
	l, _ := newLoaderWith(t, meetPath(t, name), func(_ *build.Options, o *loader.Options) {
		o.Copies = func(string) int { return 2 }
		o.MaxLoadedBytes, o.RefuseOverBudget = 1, true // copy 0 fits (nothing loaded yet); copy 1 does not
	})
	if _, err := l.Handler(context.Background(), name, "Meet", "GET"); !errors.Is(err, loader.ErrOverBudget) {
		t.Fatalf("err = %v; want ErrOverBudget for copy 1", err)
	}
}
