package isolate_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

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
}

type config struct {
	isolated  []string
	settings  map[string]map[string]any
	secrets   map[string]map[string]string
	processes map[string]int
	timeout   map[string]time.Duration
	opts      func(*isolate.Options)
}

func newHarness(t *testing.T, c config, fixtures ...string) *harness {
	t.Helper()
	dir := plugintest.PluginPath(t, fixtures...)
	log := &plugintest.Log{}
	logger := zerolog.New(log).With().Timestamp().Logger()
	settings := func(name string) (map[string]any, map[string]string) { return c.settings[name], c.secrets[name] }
	l, err := loader.New(loader.Options{
		SrcDir: filepath.Join(dir, "src"), CacheDir: plugintest.CacheDir(), BuildWait: plugintest.BuildWait,
		Settings: settings, Log: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := isolate.Options{
		Find: isolate.SourceFinder(l), ModuleDir: l.ModuleDir(), CacheDir: plugintest.CacheDir(),
		BuildWait: plugintest.BuildWait, Settings: settings,
		Processes:  func(name string) int { return c.processes[name] },
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Grace: 5 * time.Second, Log: logger,
	}
	if c.opts != nil {
		c.opts(&opts)
	}
	m, err := isolate.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	inner := handlers.Loader(l)
	hs := &handlers.Server{
		Plugins: isolate.Route(inner, m, func(name string) bool { return slices.Contains(c.isolated, name) }),
		Log:     logger,
		Setup: func(name string) handlers.PluginSetup {
			s, sec := settings(name)
			return handlers.PluginSetup{Settings: s, Secrets: sec, Timeout: c.timeout[name]}
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
	return &harness{url: srv.URL, m: m, loader: l, log: log, src: filepath.Join(dir, "src"), inner: inner}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (h *harness) get(t testing.TB, path string) answer {
	t.Helper()
	resp, err := http.Get(h.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return answer{resp.StatusCode, resp.Header, string(body)}
}

// waitFor polls path until it answers want, at most bound.
func (h *harness) waitFor(t *testing.T, path string, want int, bound time.Duration) answer {
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
	fixtures := []string{"hello", "sdkuser", "hooks", "status", "panics"}
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
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			want, got := inproc.get(t, path), iso.get(t, path)
			if got.status != want.status || got.header.Get("Content-Type") != want.header.Get("Content-Type") {
				t.Fatalf("isolated: %d %s %s; in-process: %d %s %s", got.status, got.header.Get("Content-Type"), got.body,
					want.status, want.header.Get("Content-Type"), want.body)
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
	allowed := []string{"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GODEBUG", "GOTRACEBACK", "PLUGIND_PLUGIN", "PLUGIND_SOCKET", "PLUGIND_CONFIG"}
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
