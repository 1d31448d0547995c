package isolate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/handlers"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/isolate"
	"github.com/plugind/plugind/loader"
)

// harness is an HTTP server whose plugins named in isolated run in
// processes, the others in-process, as server.Server wires them.
type harness struct {
	url    string
	m      *isolate.Manager
	loader *loader.Loader
	log    *plugintest.Log
	src    string
	inner  handlers.Plugins
	// reloaded hears of each reload the watcher started (config.watch):
	// the plugin's name once Manager.Reload returned, with its error.
	reloaded chan reloadDone
}

type reloadDone struct {
	plugin string
	err    error
}

type config struct {
	isolated  []string
	settings  map[string]map[string]any
	secrets   map[string]map[string]string
	processes map[string]int
	timeout   map[string]time.Duration
	maxBody   map[string]int64
	opts      func(*isolate.Options)
	// trees are copied into the source directory: testdata path (see
	// plugintest.CopyTree) by the folder plugin's name.
	trees map[string]string
	// files are written into the plugin path: content by slash-separated
	// path under it (lib/go.mod is "go.mod").
	files map[string]string
	// goEnv is the go command's environment for builds (build.Options.Env).
	goEnv []string
	// watch runs the loader's watcher, whose changes reload isolated
	// plugins as the server has them do (server.sourceChanged).
	watch bool
}

func newHarness(t testing.TB, c config, fixtures ...string) *harness {
	t.Helper()
	dir := plugintest.PluginPath(t, fixtures...)
	for name, tree := range c.trees {
		plugintest.CopyTree(t, tree, filepath.Join(dir, "src", name))
	}
	for name, content := range c.files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		plugintest.WriteFile(t, filepath.Dir(path), filepath.Base(path), content)
	}
	log := &plugintest.Log{}
	logger := zerolog.New(log).With().Timestamp().Logger()
	settings := func(name string) (map[string]any, map[string]string) { return c.settings[name], c.secrets[name] }
	p, err := build.New(t.Context(), build.Options{SrcDir: filepath.Join(dir, "src"), CacheDir: plugintest.CacheDir(), Env: c.goEnv, Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	var m *isolate.Manager // set before the watcher starts
	reloaded := make(chan reloadDone, 16)
	l, err := loader.New(loader.Options{
		Pipeline: p, BuildWait: plugintest.BuildWait, Reload: c.watch,
		Settings: settings, Log: logger,
		Notify: func(ev loader.Event) {
			if ev.Kind == loader.EventSourceChanged && m.Runs(ev.Plugin) {
				go func() {
					err := m.Reload(context.Background(), ev.Plugin)
					select {
					case reloaded <- reloadDone{ev.Plugin, err}:
					default: // nobody listening
					}
				}()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The pipeline's parts, as the server passes them
	// (server.NewIsolated).
	opts := isolate.Options{
		Find: isolate.SourceFinder(l), ModuleDir: l.ModuleDir(), CacheDir: plugintest.CacheDir(),
		Modules: p.ProcessModule, SourceHash: p.SourceHash, Env: p.GoEnv(),
		BuildWait: plugintest.BuildWait, Settings: settings,
		Processes:  func(name string) int { return c.processes[name] },
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Grace: 5 * time.Second, Log: logger,
	}
	if c.opts != nil {
		c.opts(&opts)
	}
	if m, err = isolate.New(opts); err != nil {
		t.Fatal(err)
	}
	if c.watch {
		if err := l.Watch(); err != nil {
			t.Fatal(err)
		}
	}
	inner := handlers.Loader(l)
	hs := &handlers.Server{
		Plugins: isolate.Route(inner, m, func(name string) bool { return slices.Contains(c.isolated, name) }),
		Log:     logger,
		Setup: func(name string) handlers.PluginSetup {
			s, sec := settings(name)
			return handlers.PluginSetup{Settings: s, Secrets: sec, Timeout: c.timeout[name], MaxBodyBytes: c.maxBody[name]}
		},
	}
	srv := httptest.NewServer(hs.Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Error(err)
		}
		_ = l.Close(ctx)
	})
	return &harness{url: srv.URL, m: m, loader: l, log: log, src: filepath.Join(dir, "src"), inner: inner, reloaded: reloaded}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (h *harness) get(t testing.TB, path string) answer {
	t.Helper()
	return h.do(t, http.MethodGet, path)
}

// do sends a request of method for path, without a body.
func (h *harness) do(t testing.TB, method, path string) answer {
	t.Helper()
	a := plugintest.Do(t, nil, plugintest.Request(t, method, h.url+path, ""))
	return answer{a.Status, a.Header, a.Body}
}

// waitFor polls path until it answers want, at most bound.
func (h *harness) waitFor(t testing.TB, path string, want int, bound time.Duration) answer {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		a := h.get(t, path)
		if a.status == want {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: still %d %s after %s; want %d", path, a.status, a.body, bound, want)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a bound
	}
}

func errorOf(t testing.TB, a answer) map[string]any {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal([]byte(a.body), &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", a.body, err)
	}
	return body
}

// TestAnswersLikeInProcess calls the same plugins in-process and
// isolated and compares the answers, for both ABIs, the sdk (settings,
// secrets, request id, route variables) and errors.
func TestAnswersLikeInProcess(t *testing.T) {
	c := config{
		settings: map[string]map[string]any{"sdkuser": {"greeting": "hi", "retries": 3}, "hooks": {"greeting": "hey"}},
		secrets:  map[string]map[string]string{"sdkuser": {"token": "s3cret"}, "hooks": {"token": "t"}},
	}
	fixtures := []string{"hello", "sdkuser", "hooks", "status", "panics", "heads"}
	inproc := newHarness(t, c, fixtures...)
	c.isolated = fixtures
	iso := newHarness(t, c, fixtures...)
	paths := []string{
		"/_PLUGIN/hello/Hello?a=1&a=2&b=x",
		"/_PLUGIN/hello/HelloWithStatus?q=1",
		"/_PLUGIN/hooks/State",
		"/_PLUGIN/panics/Ok",
		"/_PLUGIN/panics/Boom",
		"/_PLUGIN/sdkuser/Leak",
		"/_PLUGIN/hello/Nope",
		"/_PLUGIN/status/BadStatus",
		"/_PLUGIN/status/Zero",
		"/_PLUGIN/status/Text",
		"/_PLUGIN/status/Empty",
		"/_PLUGIN/status/Create",   // 405: POST and DELETE, in the loader's order
		"HEAD /_PLUGIN/heads/Page", // GETPageHandler's, not HEADPageHandler's
		"POST /_PLUGIN/heads/Page", // 405: GET and HEAD, once, though HEADPageHandler exists
		"GET /_PLUGIN/heads/Probe", // 405: POST; HEAD only comes with GET
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			method, p, ok := strings.Cut(path, " ")
			if !ok {
				method, p = http.MethodGet, path
			}
			want, got := inproc.do(t, method, p), iso.do(t, method, p)
			if got.status != want.status || got.header.Get("Content-Type") != want.header.Get("Content-Type") || got.header.Get("Allow") != want.header.Get("Allow") {
				t.Fatalf("isolated: %d %s (Allow %q) %s; in-process: %d %s (Allow %q) %s", got.status, got.header.Get("Content-Type"), got.header.Get("Allow"), got.body,
					want.status, want.header.Get("Content-Type"), want.header.Get("Allow"), want.body)
			}
			if want.status < 500 && got.body != want.body {
				t.Fatalf("isolated body %s; in-process %s", got.body, want.body)
			}
			if want.status >= 500 {
				we, ge := errorOf(t, want), errorOf(t, got)
				if we["error"] != ge["error"] {
					t.Fatalf("isolated error %q; in-process %q", ge["error"], we["error"])
				}
				if strings.Contains(got.body, "s3cret") || strings.Contains(got.body, "secret-internal-detail") {
					t.Fatalf("plugin-written text reached the client: %s", got.body)
				}
			}
		})
	}
	// The sdk: the request id and route variables travel with the call.
	req, _ := http.NewRequest(http.MethodGet, iso.url+"/_PLUGIN/sdkuser/Env", nil)
	req.Header.Set("X-Request-Id", "req-42")
	req.Header.Set("X-Plugind-Symbol", "GETLeakHandler") // a client cannot pick the symbol
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := map[string]any{"plugin": "sdkuser", "request_id": "req-42", "greeting": "hi", "retries": float64(3), "has_token": true,
		"vars": map[string]any{"file": "sdkuser", "func": "Env"}}
	for k, v := range want {
		if b1, _ := json.Marshal(env[k]); string(b1) != mustJSON(v) {
			t.Errorf("sdk %s = %s; want %s", k, b1, mustJSON(v))
		}
	}
	// The plugin's logger reached the server's log, with the plugin
	// field and the request id.
	// It is forwarded as the child writes it, so it may follow the answer.
	match := map[string]any{"plugin": "sdkuser", "request_id": "req-42", "message": "env served", "greeting": "hi", "level": "info"}
	for deadline := time.Now().Add(10 * time.Second); len(iso.log.Events(match)) != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("the child's log line is not in the server's log with plugin and request_id:\n%s", iso.log.String())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a bound
	}
	if strings.Contains(iso.log.String(), "s3cret") {
		t.Error("a secret reached the log")
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestEnvironmentAllowList: a child sees PATH and its like, never the
// server's credentials, and its secrets leave no file behind.
func TestEnvironmentAllowList(t *testing.T) {
	t.Setenv("PREST_AUTH_APIKEYS", "operator-key")
	t.Setenv("PREST_JWT_KEY", "jwt-signing-key")
	t.Setenv("PREST_PLUGIN_OTHER_TOKEN", "other-plugins-secret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "cloud")
	t.Setenv("TZ", "UTC")
	h := newHarness(t, config{isolated: []string{"crashy"}}, "crashy")
	a := h.get(t, "/_PLUGIN/crashy/Env")
	if a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.body)
	}
	var env []string
	if err := json.Unmarshal([]byte(a.body), &env); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		names = append(names, k)
		if strings.Contains(kv, "operator-key") || strings.Contains(kv, "jwt-signing-key") || strings.Contains(kv, "other-plugins-secret") || strings.Contains(kv, "cloud") {
			t.Errorf("the child sees %s", kv)
		}
	}
	allowed := []string{"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GODEBUG", "GOTRACEBACK", "PLUGIND_PLUGIN", "PLUGIND_SOCKET", "PLUGIND_CONFIG", "PLUGIND_PARENT"}
	for _, n := range names {
		if !slices.Contains(allowed, n) {
			t.Errorf("the child's environment has %s, which is not allow-listed", n)
		}
	}
	for _, n := range []string{"PATH", "TZ", "PLUGIND_SOCKET"} {
		if !slices.Contains(names, n) {
			t.Errorf("the child's environment lacks %s: %v", n, names)
		}
	}
	for _, kv := range env {
		if path, ok := strings.CutPrefix(kv, "PLUGIND_CONFIG="); ok {
			if _, err := os.Stat(path); err == nil {
				t.Errorf("the settings file %s outlived the child's start", path)
			}
		}
	}
}

// concurrently runs f n times at once and waits.
func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// TestCrashes: however the process dies under a call, that call gets 502
// JSON, the next ones 503 with Retry-After while it restarts, and then
// it serves again from a new process.
func TestCrashes(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"crashy"}, opts: func(o *isolate.Options) {
		o.MinBackoff, o.MaxBackoff, o.CrashLoop = 500*time.Millisecond, time.Second, 100
	}}, "crashy")
	cases := []struct {
		name, path, reason string
	}{
		{"panic in a goroutine", "/_PLUGIN/crashy/GoPanic", "boom in a goroutine"},
		{"os.Exit", "/_PLUGIN/crashy/Exit", "exit status 7"},
		{"SIGKILL (as the OOM killer)", "/_PLUGIN/crashy/Signal?sig=KILL", "signal: killed"},
		{"SIGSEGV", "/_PLUGIN/crashy/Signal?sig=SEGV", "SIGSEGV"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, 10*time.Second).body
			a := h.get(t, c.path)
			if a.status != http.StatusBadGateway || !strings.Contains(errorOf(t, a)["error"].(string), "crashed") {
				t.Fatalf("the call in flight got %d %s; want 502 crashed", a.status, a.body)
			}
			next := h.get(t, "/_PLUGIN/crashy/Ok")
			if next.status != http.StatusServiceUnavailable || next.header.Get("Retry-After") == "" {
				t.Fatalf("the next call got %d (Retry-After %q) %s; want 503 with Retry-After", next.status, next.header.Get("Retry-After"), next.body)
			}
			after := h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, 10*time.Second).body
			if after == before {
				t.Fatalf("served by the same process (%s) after a crash", after)
			}
			evs := h.log.Events(map[string]any{"plugin": "crashy", "message": "plugin process crashed; restarting it"})
			if len(evs) == 0 || !strings.Contains(evs[len(evs)-1]["reason"].(string), c.reason) {
				t.Fatalf("the crash's logged reason %v lacks %q", evs, c.reason)
			}
		})
	}
}

// TestOtherPluginsKeepServing crashes an isolated plugin again and again
// while an in-process plugin is called without pause: not one of those
// calls may fail.
func TestOtherPluginsKeepServing(t *testing.T) {
	const crashes = 20
	h := newHarness(t, config{isolated: []string{"crashy"}, opts: func(o *isolate.Options) {
		o.MinBackoff, o.MaxBackoff, o.CrashLoop = 10*time.Millisecond, 20*time.Millisecond, 1000
	}}, "crashy", "hello")
	h.waitFor(t, "/_PLUGIN/hello/Hello", http.StatusOK, plugintest.BuildWait)
	var mu sync.Mutex
	calls, failures := 0, []string{}
	stop := plugintest.Busy(4, func() {
		resp, err := http.Get(h.url + "/_PLUGIN/hello/Hello")
		mu.Lock()
		defer mu.Unlock()
		calls++
		if err != nil {
			failures = append(failures, err.Error())
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failures = append(failures, resp.Status)
		}
	})
	for i := range crashes {
		h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, 10*time.Second)
		path := []string{"/_PLUGIN/crashy/Exit", "/_PLUGIN/crashy/GoPanic", "/_PLUGIN/crashy/Signal?sig=KILL"}[i%3]
		if a := h.get(t, path); a.status != http.StatusBadGateway {
			t.Fatalf("crash %d: %d %s; want 502", i, a.status, a.body)
		}
	}
	h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, 10*time.Second)
	stop()
	if got := h.m.Stat("crashy").Crashes; got != crashes {
		t.Errorf("%d crashes counted; want %d", got, crashes)
	}
	t.Logf("%d calls to the in-process plugin across %d crashes", calls, crashes)
	if len(failures) > 0 || calls == 0 {
		t.Fatalf("%d of %d calls to the in-process plugin failed: %v", len(failures), calls, failures[:min(5, len(failures))])
	}
}

// TestCrashLoop: crashes in quick succession leave the plugin down, with
// the last crash's reason in the listing and the health report, until it
// is reloaded.
func TestCrashLoop(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"crashy"}, opts: func(o *isolate.Options) {
		o.MinBackoff, o.MaxBackoff, o.CrashLoop, o.CrashWindow = 10*time.Millisecond, 20*time.Millisecond, 3, time.Minute
	}}, "crashy")
	for i := range 3 {
		h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, 10*time.Second)
		if a := h.get(t, "/_PLUGIN/crashy/Exit"); a.status != http.StatusBadGateway {
			t.Fatalf("crash %d: %d %s", i, a.status, a.body)
		}
	}
	// The third crash's caller has its 502 as soon as the connection
	// breaks; the supervisor reaps the process and decides a moment later.
	a := h.get(t, "/_PLUGIN/crashy/Ok")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(a.body, "down after 3 crashes") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		a = h.get(t, "/_PLUGIN/crashy/Ok")
	}
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || !strings.Contains(a.body, "down after 3 crashes") {
		t.Fatalf("after a crash loop: %d %s; want 503 down", a.status, a.body)
	}
	var info loader.Info
	plugins := isolate.Route(h.inner, h.m, func(n string) bool { return n == "crashy" }).List()
	for _, i := range plugins {
		if i.Name == "crashy" {
			info = i
		}
	}
	if info.State != loader.StateFailed || !strings.Contains(info.LastError, "exit status 7") || info.FailedAt == nil {
		t.Fatalf("listing: state %s, last error %q; want failed with exit status 7", info.State, info.LastError)
	}
	if hs := h.m.Health(context.Background(), time.Second); !strings.Contains(hs["crashy"], "exit status 7") {
		t.Fatalf("health report %v lacks the crash reason", hs)
	}
	if err := h.m.Reload(context.Background(), "crashy"); err != nil {
		t.Fatal(err)
	}
	if a := h.get(t, "/_PLUGIN/crashy/Ok"); a.status != http.StatusOK {
		t.Fatalf("after reload: %d %s", a.status, a.body)
	}
}

// TestHungChild: a legacy call past the plugin's timeout holds the
// child's lock forever, so the child is killed and restarted; a standard
// call past it leaves a child that still answers alone.
func TestHungChild(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"crashy", "slow"}, timeout: map[string]time.Duration{"crashy": 300 * time.Millisecond, "slow": 300 * time.Millisecond},
		opts: func(o *isolate.Options) { o.MinBackoff = 10 * time.Millisecond }}, "crashy", "slow")
	before := h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, 10*time.Second).body
	if a := h.get(t, "/_PLUGIN/crashy/Stuck"); a.status != http.StatusGatewayTimeout {
		t.Fatalf("stuck call: %d %s; want 504", a.status, a.body)
	}
	// The child is killed once the proxy sees the call's deadline pass,
	// which may be just after the client got its 504: until then other
	// calls may still reach it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if a := h.get(t, "/_PLUGIN/crashy/Ok"); a.status == http.StatusOK && a.body != before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child holding a stuck legacy call was not replaced")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a bound
	}
	if a := h.get(t, "/_PLUGIN/slow/Standard?d=1ms"); a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.body)
	}
	pids := h.m.Stat("slow").PIDs
	if a := h.get(t, "/_PLUGIN/slow/Standard?d=5s"); a.status != http.StatusGatewayTimeout {
		t.Fatalf("slow standard call: %d %s; want 504", a.status, a.body)
	}
	if a := h.get(t, "/_PLUGIN/slow/Standard?d=1ms"); a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if got := h.m.Stat("slow").PIDs; len(pids) != 1 || !slices.Equal(got, pids) {
		t.Fatalf("a child that still answers was restarted: %v -> %v", pids, got)
	}
}

// TestReloadDrains: a reload starts the new version, switches to it when
// it is healthy and lets the old one finish its calls before stopping
// it; no call fails meanwhile.
func TestReloadDrains(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"slow"}}, "slow")
	if a := h.get(t, "/_PLUGIN/slow/Legacy"); a.status != http.StatusOK || a.body != "slept" {
		t.Fatalf("%d %s", a.status, a.body)
	}
	old := h.m.Stat("slow").PIDs
	inflight := make(chan answer, 1)
	go func() { inflight <- h.get(t, "/_PLUGIN/slow/Legacy?d=1500ms") }()
	// Wait until the call is in flight in the old process.
	for deadline := time.Now().Add(10 * time.Second); h.m.Stat("slow").InFlight != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the call never got in flight")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a bound
	}
	src, err := os.ReadFile(filepath.Join(h.src, "slow.go"))
	if err != nil {
		t.Fatal(err)
	}
	plugintest.WriteFile(t, h.src, "slow.go", strings.Replace(string(src), `return "slept"`, `return "slept v2"`, 1))
	var failed []string
	var mu sync.Mutex
	stop := plugintest.Busy(2, func() {
		a := h.get(t, "/_PLUGIN/slow/Standard?d=1ms")
		if a.status != http.StatusOK {
			mu.Lock()
			failed = append(failed, a.body)
			mu.Unlock()
		}
	})
	if err := h.m.Reload(context.Background(), "slow"); err != nil {
		t.Fatal(err)
	}
	stop()
	// The old process released the call once its handler returned; the
	// answer reaches the client just after (net/http writes it once the
	// handler is done), so it is waited for, with a bound. A reload that
	// stopped the old process under the call would fail it.
	select {
	case a := <-inflight:
		if a.status != http.StatusOK || a.body != "slept" {
			t.Fatalf("the call in flight across the reload got %d %s; want the old version's 200 slept", a.status, a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call in flight across the reload never completed")
	}
	if a := h.get(t, "/_PLUGIN/slow/Legacy"); a.body != "slept v2" {
		t.Fatalf("after the reload: %d %s; want the new version", a.status, a.body)
	}
	if now := h.m.Stat("slow").PIDs; slices.Equal(now, old) {
		t.Fatalf("same process %v after the reload", now)
	}
	for _, pid := range old {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("the old process %d is still running", pid)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d calls failed during the reload: %v", len(failed), failed[:min(3, len(failed))])
	}
}

// TestReloadMemory: an isolated plugin's memory leaves with its process.
// Across reloads of an edited source, each process is replaced by one of
// the same size, and the server (this test binary) keeps nothing of the
// retired ones: its live heap and its goroutines stay as they were.
//
// The RSS of the server and its children, issue 12's measure (within 10%
// across 50 reloads), is measured on the real server by make bench's
// lifebench, against in-process reloads: under -race this binary's RSS
// grows by the race runtime's own metadata (~0.2 MiB a reload here, with
// no Go heap behind it), so it is logged here, not bounded.
func TestReloadMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("VmRSS is read from /proc: Linux only")
	}
	const (
		warmup, reloads = 2, 8
		heapPerReload   = 64 << 10 // measured: ~2 KiB, the log's lines
		childGrowth     = 0.10
	)
	h := newHarness(t, config{isolated: []string{"slow"}}, "slow")
	if a := h.get(t, "/_PLUGIN/slow/Legacy"); a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.body)
	}
	src, err := os.ReadFile(filepath.Join(h.src, "slow.go"))
	if err != nil {
		t.Fatal(err)
	}
	reload := func(i int) {
		t.Helper()
		want := fmt.Sprintf("slept v%d", i)
		plugintest.WriteFile(t, h.src, "slow.go", strings.Replace(string(src), `return "slept"`, "return "+strconv.Quote(want), 1))
		if err := h.m.Reload(context.Background(), "slow"); err != nil {
			t.Fatal(err)
		}
		if a := h.get(t, "/_PLUGIN/slow/Legacy"); a.status != http.StatusOK || a.body != want {
			t.Fatalf("after reload %d: %d %s; want %s", i, a.status, a.body, want)
		}
	}
	type sample struct {
		pid                int
		heap               uint64 // live, after a collection
		goroutines         int
		serverRSS, procRSS int64
	}
	measure := func() sample {
		t.Helper()
		pids := h.m.Stat("slow").PIDs
		if len(pids) != 1 {
			t.Fatalf("%d processes of slow; want 1 (Reload returns once the old one has exited)", len(pids))
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		debug.FreeOSMemory()
		return sample{pid: pids[0], heap: ms.HeapAlloc, goroutines: runtime.NumGoroutine(),
			serverRSS: rssOf(t, os.Getpid()), procRSS: rssOf(t, pids[0])}
	}
	for i := range warmup { // the first reloads size the server's buffers
		reload(i + 1)
	}
	before := measure()
	seen := map[int]bool{before.pid: true}
	after := before
	for i := range reloads {
		reload(warmup + i + 1)
		after = measure()
		if seen[after.pid] {
			t.Fatalf("reload %d: process %d served before; want a new one", i+1, after.pid)
		}
		seen[after.pid] = true
		if g := float64(after.procRSS-before.procRSS) / float64(before.procRSS); g > childGrowth {
			t.Errorf("reload %d: the new process's RSS is %.1f MiB, %.0f%% over the first's %.1f MiB; want at most %.0f%%",
				i+1, mib(after.procRSS), 100*g, mib(before.procRSS), 100*childGrowth)
		}
	}
	t.Logf("across %d reloads: live heap %d -> %d KiB, goroutines %d -> %d, RSS of the server %.1f -> %.1f MiB and of its process %.1f -> %.1f MiB (together %+.1f%%)",
		reloads, before.heap>>10, after.heap>>10, before.goroutines, after.goroutines, mib(before.serverRSS), mib(after.serverRSS),
		mib(before.procRSS), mib(after.procRSS), 100*float64(after.serverRSS+after.procRSS-before.serverRSS-before.procRSS)/float64(before.serverRSS+before.procRSS))
	if grown := int64(after.heap) - int64(before.heap); grown > heapPerReload*reloads {
		t.Errorf("the server's live heap grew %d KiB across %d reloads; want at most %d KiB a reload", grown>>10, reloads, heapPerReload>>10)
	}
	if after.goroutines > before.goroutines+2 {
		t.Errorf("goroutines %d -> %d across %d reloads: something of a retired process is still running", before.goroutines, after.goroutines, reloads)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// TestProcessesSpread: N children of a legacy plugin serve N calls at
// once, where one child would serve them one after another.
func TestProcessesSpread(t *testing.T) {
	const n, d = 3, 800 * time.Millisecond
	h := newHarness(t, config{isolated: []string{"crashy"}, processes: map[string]int{"crashy": n}}, "crashy")
	h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, 10*time.Second)
	if got := len(h.m.Stat("crashy").PIDs); got != n {
		t.Fatalf("%d processes; want %d", got, n)
	}
	bodies := make([]string, n)
	began := time.Now()
	concurrently(n, func(i int) {
		a := h.get(t, "/_PLUGIN/crashy/Slow?d="+d.String())
		if a.status != http.StatusOK {
			t.Errorf("%d %s", a.status, a.body)
		}
		bodies[i] = a.body
	})
	took := time.Since(began)
	slices.Sort(bodies)
	if distinct := len(slices.Compact(bodies)); distinct != n {
		t.Errorf("calls went to %d processes; want %d", distinct, n)
	}
	if took > d*n*2/3 {
		t.Fatalf("%d calls of %s took %s: not concurrent", n, d, took)
	}
	t.Logf("%d legacy calls of %s on %d processes took %s", n, d, n, took)
}

// TestNoBusInAProcess: the bus and tasks answer an isolated plugin with
// the sdk's documented errors, ErrNoBus and ErrNoTasks.
func TestNoBusInAProcess(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"nobus"}}, "nobus")
	a := h.get(t, "/_PLUGIN/nobus/Try")
	if a.status != http.StatusOK || strings.TrimSpace(a.body) != `{"no_bus":true,"no_tasks":true}` {
		t.Fatalf("%d %s; want both documented errors", a.status, a.body)
	}
}

// TestRequestsAsInProcess: the limits the server enforces around any
// plugin hold for an isolated one (a body over the limit is 413, not a
// crash), and the plugin sees the client's Host and address.
func TestRequestsAsInProcess(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"slow", "crashy"}, maxBody: map[string]int64{"slow": 10}}, "slow", "crashy")
	// Chunked, so that the limit is met while the body streams to the child.
	h.get(t, "/_PLUGIN/slow/Standard?d=1ms") // started
	began := time.Now()
	resp, err := http.Post(h.url+"/_PLUGIN/slow/Body", "text/plain", io.MultiReader(strings.NewReader(strings.Repeat("x", 100))))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body over the limit: %d %s; want 413", resp.StatusCode, body)
	}
	if took := time.Since(began); took > time.Second {
		t.Fatalf("413 took %s: the broken upload was taken for a crash and waited on", took)
	}
	if a := h.get(t, "/_PLUGIN/slow/Standard?d=1ms"); a.status != http.StatusOK {
		t.Fatalf("after a body over the limit: %d %s", a.status, a.body)
	}
	if st := h.m.Stat("slow"); st.Crashes != 0 {
		t.Fatalf("%d crashes counted for a body over the limit", st.Crashes)
	}
	host, remote, _ := strings.Cut(h.get(t, "/_PLUGIN/crashy/Who").body, " ")
	if want := strings.TrimPrefix(h.url, "http://"); host != want || !strings.HasPrefix(remote, "127.0.0.1:") {
		t.Fatalf("the plugin sees Host %q and RemoteAddr %q; want %q and the client's loopback address", host, remote, want)
	}
}

// TestLegacyBusy: a prestd-ABI call waits for the one before it in its
// process at most the legacy wait, then gets 503 as in-process.
func TestLegacyBusy(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"crashy"}, opts: func(o *isolate.Options) { o.LegacyWait = 200 * time.Millisecond }}, "crashy")
	h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, 10*time.Second)
	first := make(chan answer, 1)
	go func() { first <- h.get(t, "/_PLUGIN/crashy/Slow?d=2s") }()
	// The call holds the child's lock once it says so on stdout.
	started := map[string]any{"plugin": "crashy", "stream": "stdout", "message": "slow call started"}
	for deadline := time.Now().Add(10 * time.Second); len(h.log.Events(started)) != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the first call never started")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a bound
	}
	a := h.get(t, "/_PLUGIN/crashy/Slow?d=1ms")
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || !strings.Contains(a.body, "busy") {
		t.Fatalf("a call behind a slow one: %d %s; want 503 busy", a.status, a.body)
	}
	if a := <-first; a.status != http.StatusOK {
		t.Fatalf("the slow call: %d %s", a.status, a.body)
	}
}

// TestUnknownNames: a name with no source is 404 and leaves no record:
// calls for random names cannot grow the manager.
func TestUnknownNames(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"nope", "crashy"}}, "crashy")
	for range 3 {
		if a := h.get(t, "/_PLUGIN/nope/Hello"); a.status != http.StatusNotFound {
			t.Fatalf("%d %s; want 404", a.status, a.body)
		}
	}
	if _, ok := h.m.Info("nope"); ok || h.m.Runs("nope") {
		t.Fatal("a plugin without source got a record")
	}
	if h.m.Runs("crashy") {
		t.Fatal("a plugin never called runs in a process")
	}
	if a := h.get(t, "/_PLUGIN/crashy/Ok"); a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if _, ok := h.m.Info("crashy"); !ok || !h.m.Runs("crashy") {
		t.Fatal("a called plugin has no record")
	}
}

// TestStoppedChild: a child that stops answering (here SIGSTOPped) is
// killed once a call outlives its timeout, and restarted.
func TestStoppedChild(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"crashy"}, timeout: map[string]time.Duration{"crashy": 300 * time.Millisecond},
		opts: func(o *isolate.Options) { o.MinBackoff = 10 * time.Millisecond }}, "crashy")
	before := h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, 10*time.Second).body
	pids := h.m.Stat("crashy").PIDs
	if err := syscall.Kill(pids[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// A signal is delivered when its target next runs: wait until the
	// child is stopped.
	for deadline := time.Now().Add(10 * time.Second); ; {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(stat), ") T ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child did not stop: %s", stat)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a bound
	}
	if a := h.get(t, "/_PLUGIN/crashy/Ok"); a.status != http.StatusGatewayTimeout {
		t.Fatalf("a call to a stopped child: %d %s; want 504", a.status, a.body)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if a := h.get(t, "/_PLUGIN/crashy/Ok"); a.status == http.StatusOK && a.body != before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stopped child was not replaced")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a bound
	}
	evs := h.log.Events(map[string]any{"plugin": "crashy", "message": "plugin process crashed; restarting it"})
	if len(evs) != 1 || !strings.Contains(evs[0]["reason"].(string), "stopped answering") {
		t.Fatalf("crash log %v; want one naming that it stopped answering", evs)
	}
}

// TestOrphanExits: a child whose server is gone (killed without stopping
// it) exits by itself rather than hold its socket and memory.
func TestOrphanExits(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"crashy"}}, "crashy")
	h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, 10*time.Second)
	sock := filepath.Join(t.TempDir(), "s")
	// sh starts the program, waits until it serves (its socket exists),
	// and exits, orphaning it.
	sh := exec.Command("sh", "-c", `PLUGIND_PARENT=$$ "$0" >/dev/null 2>&1 &
		for i in $(seq 1000); do [ -S "$1" ] && break; sleep 0.01; done
		[ -S "$1" ] || exit 1
		echo $!`, h.m.Stat("crashy").Program, sock)
	sh.Env = []string{"PLUGIND_SOCKET=" + sock, "PLUGIND_PLUGIN=orphan", "PATH=" + os.Getenv("PATH")}
	out, err := sh.Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	for deadline := time.Now().Add(10 * time.Second); ; {
		state, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(state), ") Z ") {
			return // gone, or a zombie waiting for its new parent
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphaned child %d still runs: %s", pid, state)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a bound
	}
}
