package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/server"
)

// loadConfig loads a configuration the way the binary does: from a
// prest.toml with content toml and from environ, for plugin path dir and
// the shared artifact cache.
func loadConfig(t *testing.T, dir, toml string, environ ...string) config.Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "prest.toml")
	plugintest.WriteFile(t, filepath.Dir(file), "prest.toml", toml)
	environ = append(environ, "PREST_CONF="+file, "PREST_PLUGINPATH="+dir,
		"PREST_PLUGINS_CACHEDIR="+plugintest.CacheDir(), "PREST_PLUGINS_CACHEMAXMB="+strconv.Itoa(plugintest.CacheMaxMB), "PREST_HTTP_HOST=127.0.0.1", "PREST_PLUGINS_WARMUP=false",
		"PREST_PLUGINS_BUILDWAIT="+plugintest.BuildWait.String(), "PREST_HTTP_WRITETIMEOUT="+plugintest.WriteTimeout.String())
	cfg, err := config.Load(nil, environ)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const secret = "s3cr3t-token-value"

func TestSDKSettingsAndSecrets(t *testing.T) {
	dir := plugintest.PluginPath(t, "sdkuser")
	srv := startConfig(t, loadConfig(t, dir, `
[plugin.sdkuser.settings]
greeting = "hi"
retries = 3
`, "PREST_PLUGIN_SDKUSER_TOKEN="+secret))

	req, _ := http.NewRequest("GET", srv.url+"/_PLUGIN/sdkuser/Env", nil)
	req.Header.Set("X-Request-Id", "req-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	want := map[string]any{
		"plugin": "sdkuser", "request_id": "req-42", "greeting": "hi", "retries": 3.0, "has_token": true,
		"vars": map[string]any{"file": "sdkuser", "func": "Env"},
	}
	if fmt.Sprint(env) != fmt.Sprint(want) {
		t.Errorf("sdk view = %v\nwant       %v", env, want)
	}
	if ev := srv.logs.Events(map[string]any{"message": "env served", "plugin": "sdkuser", "request_id": "req-42", "greeting": "hi"}); len(ev) != 1 {
		t.Errorf("the sdk logger lacks plugin or request id: %s", srv.logs)
	}

	// The secret reaches no body, listing or log line, even on failure.
	bodies := []string{
		srv.do(t, "GET", "/_PLUGIN/sdkuser/Leak", "").body,
		srv.do(t, "GET", "/_PLUGINS", "").body,
		srv.do(t, "GET", "/readyz", "").body,
	}
	for _, b := range append(bodies, srv.logs.String()) {
		if strings.Contains(b, secret) {
			t.Errorf("the secret leaked into %q", b)
		}
	}
}

func TestHooks(t *testing.T) {
	dir := plugintest.PluginPath(t, "hooks")
	src := filepath.Join(dir, "src")
	data, err := os.ReadFile(filepath.Join(src, "hooks.go"))
	if err != nil {
		t.Fatal(err)
	}
	// A second plugin from other content: equal content would share one
	// artifact, and with it the globals.
	plugintest.WriteFile(t, src, "failing.go", string(data)+"\n// failing\n")
	marker := filepath.Join(t.TempDir(), "closed")
	secrets := filepath.Join(t.TempDir(), "secrets.toml")
	plugintest.WriteFile(t, filepath.Dir(secrets), "secrets.toml", "[hooks]\ntoken = \""+secret+"\"\n")
	srv := startConfig(t, loadConfig(t, dir, fmt.Sprintf(`
[plugins]
secretsfile = %q

[plugin.hooks.settings]
greeting = "hello"
close_marker = %q
healthy = false

[plugin.failing.settings]
fail_init = true

[auth]
apikeys = ["operator-key"]

[plugin.hooks]
apikeys = ["hooks-key"]

[plugin.failing]
apikeys = ["failing-key"]
`, secrets, marker)))
	op := map[string]string{"X-API-Key": "operator-key"}

	got := srv.request(t, "GET", "/_PLUGIN/hooks/State", map[string]string{"X-API-Key": "hooks-key"})
	if got.status != 200 || got.body != `{"greeting":"hello","has_token":true,"inits":1}` {
		t.Errorf("State = %d %s", got.status, got.body)
	}
	// What Init said is the plugin's text: for operators, not callers.
	got = srv.request(t, "GET", "/_PLUGIN/failing/State", map[string]string{"X-API-Key": "failing-key"})
	if got.status != 500 || !strings.Contains(got.body, `Init failed`) || strings.Contains(got.body, "database unreachable") || !strings.Contains(got.body, `"request_id"`) {
		t.Errorf("failing Init, to a caller = %d %s", got.status, got.body)
	}
	got = srv.request(t, "GET", "/_PLUGIN/failing/State", op)
	if got.status != 500 || !strings.Contains(got.body, "database unreachable") {
		t.Errorf("failing Init, to an operator = %d %s", got.status, got.body)
	}
	ready := srv.do(t, "GET", "/readyz", "")
	if ready.status != 200 || !strings.Contains(ready.body, `"plugins":{"hooks":"failing"}`) {
		t.Errorf("readyz, anonymous = %d %s", ready.status, ready.body)
	}
	ready = srv.request(t, "GET", "/readyz", op)
	if ready.status != 200 || !strings.Contains(ready.body, `"plugins":{"hooks":"backend down"}`) {
		t.Errorf("readyz, operator = %d %s", ready.status, ready.body)
	}
	if listing := srv.request(t, "GET", "/_PLUGINS", op).body; !strings.Contains(listing, `"health":"backend down"`) {
		t.Errorf("the listing lacks the health: %s", listing)
	}
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(marker); err != nil || string(data) != "closed" {
		t.Errorf("Close did not run at shutdown: %q %v", data, err)
	}
}

func TestMiddlewarePlugins(t *testing.T) {
	dir := plugintest.PluginPath(t, "middleware", "hello")
	srv := startConfig(t, loadConfig(t, dir, `
pluginmiddlewarelist = [
	{file = "middleware", func = "First"},
	{file = "middleware", func = "Second"},
	{file = "middleware", func = "Guard"},
	{file = "middleware", func = "Boom"},
]
`))
	get := func(path string, pass bool) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.url+path, nil)
		if pass {
			req.Header.Set("X-Pass", "yes")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, _ := get("/_PLUGIN/hello/Hello", false)
	if resp.StatusCode != 401 || !slices.Equal(resp.Header.Values("X-Chain"), []string{"first", "second"}) {
		t.Errorf("without a pass: %d, chain %q; want 401 after first and second", resp.StatusCode, resp.Header.Values("X-Chain"))
	}
	if resp, _ := get("/_PLUGIN/hello/Hello", true); resp.StatusCode != 200 {
		t.Errorf("with a pass: %d", resp.StatusCode)
	}
	if resp, _ := get("/healthz", false); resp.StatusCode != 200 || len(resp.Header.Values("X-Chain")) != 0 {
		t.Errorf("probes went through the middleware: %d", resp.StatusCode)
	}
	if resp, body := get("/_PLUGIN/hello/Hello?boom=1", true); resp.StatusCode != 500 || !strings.Contains(body, "a middleware plugin panicked") {
		t.Errorf("middleware panic: %d %s", resp.StatusCode, body)
	}
}

// TestMiddlewareWherePrestdKeepsIt: pluginmiddlewarelist's {file =
// "hello"} is src/middlewares/hello.go, and its constructor returns an
// interface value of negroni's shape; the endpoint plugin hello is
// another plugin, and src/middlewares is no plugin at all.
func TestMiddlewareWherePrestdKeepsIt(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	plugintest.Middleware(t, dir, "forms", "hello")
	srv := startConfig(t, loadConfig(t, dir, `pluginmiddlewarelist = [{file = "hello", func = "Negroni"}]`+"\n"))
	got := srv.do(t, "GET", "/_PLUGIN/hello/Hello", "")
	if got.status != 200 || !slices.Equal(got.header.Values("X-Form"), []string{"negroni"}) || !strings.Contains(got.body, "Hello") {
		t.Errorf("through the middleware: %d %q %s", got.status, got.header.Values("X-Form"), got.body)
	}
	for _, path := range []string{"/_PLUGIN/middlewares/Negroni", "/_PLUGIN/middlewares/Hello"} {
		if got := srv.do(t, "GET", path, ""); got.status != 404 {
			t.Errorf("GET %s = %d %s, want 404", path, got.status, got.body)
		}
	}
	var listing struct{ Plugins []struct{ Name string } }
	if err := json.Unmarshal([]byte(srv.do(t, "GET", "/_PLUGINS", "").body), &listing); err != nil {
		t.Fatal(err)
	}
	if len(listing.Plugins) != 1 || listing.Plugins[0].Name != "hello" {
		t.Errorf("/_PLUGINS lists %+v, want hello alone", listing.Plugins)
	}
}

// TestPrestdMiddlewareExample: prestd's own example, unchanged
// (testdata/deps/middlewares: lib/go.mod requiring
// github.com/urfave/negroni/v3 and src/middlewares/hello.go, whose
// HelloMiddlewareLoad returns a negroni.Handler), applies through
// pluginmiddlewarelist. negroni comes from the test module proxy.
func TestPrestdMiddlewareExample(t *testing.T) {
	if !plugintest.OwnProcess(t) {
		return // the only one here to load negroni: no other plugin's packages meet it
	}
	_, env := plugintest.ModuleProxy(t)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	lib := filepath.Join(t.TempDir(), "lib")
	plugintest.CopyTree(t, "deps/middlewares", lib)
	hello, err := os.ReadFile(filepath.Join(plugintest.Root(), "lib", "src", "hello.go"))
	if err != nil {
		t.Fatal(err)
	}
	plugintest.WriteFile(t, filepath.Join(lib, "src"), "hello.go", string(hello))
	srv := startConfig(t, loadConfig(t, lib, `pluginmiddlewarelist = [{file = "hello", func = "Hello"}]`+"\n"))
	got := srv.do(t, "GET", "/_PLUGIN/hello/Hello", "")
	if got.status != 200 || got.header.Get("X-Hello-Middleware") != "Hello Middleware" {
		t.Errorf("GET /_PLUGIN/hello/Hello = %d, X-Hello-Middleware %q; want 200 through prestd's middleware\n%s",
			got.status, got.header.Get("X-Hello-Middleware"), srv.logs)
	}
}

func TestMiddlewareFailsClosed(t *testing.T) {
	dir := plugintest.PluginPath(t, "middleware")
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "broken.go", plugintest.Unique(t, "package main\n\nfunc XMiddlewareLoad( {\n"))
	tests := []struct{ file, fn, want string }{
		{"middleware", "Wrong", `middleware middleware/Wrong (pluginmiddlewarelist): plugin "middleware": WrongMiddlewareLoad has type func(int) int`},
		{"middleware", "Missing", `plugin "middleware" has no MissingMiddlewareLoad`},
		{"nosuch", "X", `middleware "nosuch" not found: put it in src/middlewares/nosuch.go`},
		{"broken", "X", `plugin "broken" failed to build`},
	}
	for _, tt := range tests {
		cfg := loadConfig(t, dir, fmt.Sprintf("pluginmiddlewarelist = [{file = %q, func = %q}]\n", tt.file, tt.fn))
		s, err := server.New(context.Background(), cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = s.Serve(context.Background(), ln) // returns: start-up fails
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s/%s: err = %v\nwant one containing %s", tt.file, tt.fn, err, tt.want)
		}
	}
}

func TestLimits(t *testing.T) {
	srv := startConfig(t, loadConfig(t, plugintest.PluginPath(t, "slow"), `
[plugins]
legacywait = "300ms"

[plugin.slow]
timeout = "400ms"
maxconcurrency = 1
methods = ["GET", "POST"]
maxbodybytes = 10
`))
	srv.do(t, "GET", "/_PLUGIN/slow/Standard?d=0s", "") // build

	began := time.Now()
	got := srv.do(t, "GET", "/_PLUGIN/slow/Standard?d=5s", "")
	if took := time.Since(began); got.status != 504 || took > 2*time.Second || !json.Valid([]byte(got.body)) {
		t.Errorf("slow standard handler: %d after %s: %s", got.status, took, got.body)
	}

	// A hung legacy handler: its caller gets 504; later callers wait for
	// the plugin at most legacywait, then 503, not forever.
	got = srv.do(t, "GET", "/_PLUGIN/slow/Legacy?d=3s", "")
	if got.status != 504 {
		t.Errorf("hung legacy handler: %d %s", got.status, got.body)
	}
	began = time.Now()
	got = srv.do(t, "GET", "/_PLUGIN/slow/Legacy?d=0s", "")
	if took := time.Since(began); got.status != 503 || got.header.Get("Retry-After") == "" || took > 2*time.Second {
		t.Errorf("caller behind a hung legacy handler: %d after %s: %s", got.status, took, got.body)
	}

	var wg sync.WaitGroup
	wg.Go(func() { srv.do(t, "GET", "/_PLUGIN/slow/Standard?d=350ms", "") }) // under the 400ms timeout
	srv.waitInFlight(t, 1)
	got = srv.do(t, "GET", "/_PLUGIN/slow/Standard?d=0s", "")
	wg.Wait()
	if got.status != 429 || got.header.Get("Retry-After") == "" {
		t.Errorf("beyond maxconcurrency: %d %s", got.status, got.body)
	}

	if got := srv.do(t, "PUT", "/_PLUGIN/slow/Standard", ""); got.status != 405 || got.header.Get("Allow") != "GET, POST" {
		t.Errorf("a method outside the list: %d Allow %q", got.status, got.header.Get("Allow"))
	}
	if got := srv.do(t, "POST", "/_PLUGIN/slow/Body", strings.Repeat("x", 100)); got.status != 413 || !json.Valid([]byte(got.body)) {
		t.Errorf("an oversized body: %d %s", got.status, got.body)
	}
	if got := srv.do(t, "POST", "/_PLUGIN/slow/Body", "small"); got.status != 200 || got.body != "5" {
		t.Errorf("a small body: %d %s", got.status, got.body)
	}
	// http.ErrAbortHandler under a timeout (in a goroutine of the server's)
	// aborts the response, not the process.
	if _, err := http.Get(srv.url + "/_PLUGIN/slow/Abort"); err == nil {
		t.Error("an aborted response arrived whole")
	}
	if got := srv.do(t, "GET", "/_PLUGIN/slow/Standard?d=0s", ""); got.status != 200 {
		t.Errorf("after an abort: %d", got.status)
	}
}
