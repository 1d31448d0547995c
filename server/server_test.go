package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/server"
)

// running is a server started on a loopback port for one test.
type running struct {
	url  string
	addr string
	logs *plugintest.Log
	stop func() error // cancels and waits for Serve's result
}

func start(t *testing.T, pluginPath string, debug bool) *running {
	t.Helper()
	return startWith(t, pluginPath, func(c *config.Config) { c.Debug = debug })
}

// startWith starts a server whose configuration set may change.
func startWith(t *testing.T, pluginPath string, set func(*config.Config)) *running {
	t.Helper()
	cfg := config.Config{
		PluginPath: pluginPath,
		HTTP:       config.HTTP{Host: "127.0.0.1"},
		Plugins: config.Plugins{
			CacheDir: plugintest.CacheDir(), Go: "go", BuildTimeout: 5 * time.Minute, BuildWait: plugintest.BuildWait,
			Reload: config.ReloadOff, LoadCheckTimeout: 30 * time.Second, CacheMaxMB: plugintest.CacheMaxMB,
		},
		Lifecycle: config.Lifecycle{ServerShutdownTimeout: 10 * time.Second},
		Tasks:     config.Tasks{Dir: t.TempDir(), Workers: 2, Queue: 8, Timeout: time.Minute, Retention: time.Hour},
		Metrics:   config.Metrics{Enabled: true, Path: "/metrics"},
	}
	set(&cfg)
	return startConfig(t, cfg)
}

// startConfig starts a server with cfg, whatever its address (tests
// listen on a loopback port of their own), and waits until it is ready.
func startConfig(t *testing.T, cfg config.Config) *running {
	t.Helper()
	r := startLoose(t, cfg)
	logs := r.logs
	// Readiness may wait for middleware plugins to build: a bound for a
	// loaded machine with a cold cache, not an expectation.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if resp, err := http.Get(r.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready: %s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startLoose starts a server with cfg and returns at once.
func startLoose(t *testing.T, cfg config.Config) *running {
	t.Helper()
	logs := &plugintest.Log{}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, cfg, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	r := &running{url: "http://" + ln.Addr().String(), addr: ln.Addr().String(), logs: logs}
	var once sync.Once
	var result error
	r.stop = func() error {
		once.Do(func() { cancel(); result = <-served })
		return result
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return r
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r *running) do(t *testing.T, method, path, body string) response {
	t.Helper()
	a := plugintest.Do(t, nil, plugintest.Request(t, method, r.url+path, body))
	return response{status: a.Status, header: a.Header, body: a.Body}
}

func (r *running) builds(plugin string) int {
	return len(r.logs.Events(map[string]any{"plugin": plugin, "message": "plugin build started"}))
}

func TestSeedExample(t *testing.T) {
	srv := start(t, plugintest.PluginPath(t, "hello"), false)
	// The seed's body, as the handler's json.Marshal writes it.
	const want = `{"http_vars":{"file":"hello","func":"Hello"},"url_query":{"abc":["123"]},"msg":"Hello plugin caller!"}`
	got := srv.do(t, "GET", "/_PLUGIN/hello/Hello?abc=123", "")
	if got.status != 200 || got.body != want {
		t.Errorf("got %d %s\nwant 200 %s", got.status, got.body, want)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	// Sized, not chunked: by net/http for a small body, by the adapter
	// for one past what net/http measures itself.
	if cl := got.header.Get("Content-Length"); cl != fmt.Sprint(len(want)) {
		t.Errorf("Content-Length = %q, want %d", cl, len(want))
	}
	long := strings.Repeat("x", 3000)
	got = srv.do(t, "GET", "/_PLUGIN/hello/Hello?abc="+long, "")
	if cl := got.header.Get("Content-Length"); got.status != 200 || !strings.Contains(got.body, long) || cl != fmt.Sprint(len(got.body)) {
		t.Errorf("a %d-byte answer: %d, Content-Length %q", len(got.body), got.status, cl)
	}
	got = srv.do(t, "GET", "/_PLUGIN/hello/HelloWithStatus?abc=123", "")
	if got.status != 202 || !strings.Contains(got.body, `"func":"HelloWithStatus"`) {
		t.Errorf("HelloWithStatus = %d %s", got.status, got.body)
	}
	head := srv.do(t, "HEAD", "/_PLUGIN/hello/Hello?abc=123", "")
	if head.status != 200 || head.body != "" || head.header.Get("Content-Length") != fmt.Sprint(len(want)) {
		t.Errorf("HEAD = %d %q Content-Length %q", head.status, head.body, head.header.Get("Content-Length"))
	}
	access := srv.logs.Events(map[string]any{"message": "request", "plugin": "hello", "func": "Hello", "method": "GET"})
	if len(access) != 2 || access[0]["status"] != 200.0 || access[0]["duration"] == nil || access[1]["size"] != float64(3000+len(want)-3) {
		t.Errorf("access log = %v", access)
	}
	if len(srv.logs.Events(map[string]any{"message": "plugin registered", "plugin": "hello", "kind": "file"})) != 1 {
		t.Errorf("no registration line: %s", srv.logs)
	}
}

func TestConcurrentCallsSeeOnlyTheirOwnQuery(t *testing.T) {
	srv := start(t, plugintest.PluginPath(t, "hello"), false)
	srv.do(t, "GET", "/_PLUGIN/hello/Hello", "") // build first
	const n = 500
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := client.Get(fmt.Sprintf("%s/_PLUGIN/hello/Hello?abc=%d", srv.url, i))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var body struct {
				URLQuery map[string][]string `json:"url_query"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				errs <- err
				return
			}
			if got := body.URLQuery["abc"]; len(got) != 1 || got[0] != fmt.Sprint(i) {
				errs <- fmt.Errorf("request %d saw abc=%q", i, got)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestResponses(t *testing.T) {
	srv := start(t, plugintest.PluginPath(t, "hello", "status", "std", "badsig", "report"), false)
	tests := []struct {
		method, path string
		status       int
		body         string // exact, or a substring when contains is set
		contains     bool
		contentType  string
		allow        string
	}{
		{method: "POST", path: "/_PLUGIN/status/Create?name=x", status: 201, body: `{"created":"x"}`, contentType: "application/json"},
		{method: "DELETE", path: "/_PLUGIN/status/Create", status: 204},
		{method: "GET", path: "/_PLUGIN/status/Create", status: 405, body: `"plugin \"status\" has no GET handler for Create"`, contains: true, allow: "POST, DELETE"},
		{method: "GET", path: "/_PLUGIN/status/Text", status: 200, body: "plain text, not JSON", contentType: "text/plain; charset=utf-8"},
		{method: "GET", path: "/_PLUGIN/status/Zero", status: 200, body: `"zero"`, contentType: "application/json"},
		{method: "GET", path: "/_PLUGIN/status/Empty", status: 200, body: "", contentType: "text/plain; charset=utf-8"},
		{method: "GET", path: "/_PLUGIN/status/BadStatus", status: 500, body: "returned status 42", contains: true, contentType: "application/json"},
		{method: "GET", path: "/_PLUGIN/std/Header?id=7", status: 200, body: "id=7"},
		{method: "GET", path: "/_PLUGIN/report/Summary?n=1&n=2&n=3", status: 200, body: `{"count":3,"joined":"1+2+3"}`},
		{method: "GET", path: "/_PLUGIN/nosuch/Hello", status: 404, body: `{"error":"plugin \"nosuch\" not found","plugin":"nosuch"}` + "\n"},
		{method: "GET", path: "/_PLUGIN/hello/Nope", status: 404, body: "GETNopeHandler", contains: true},
		{method: "PUT", path: "/_PLUGIN/hello/Hello", status: 405, allow: "GET, HEAD", body: "no PUT handler", contains: true},
		{method: "OPTIONS", path: "/_PLUGIN/hello/Hello", status: 405, allow: "GET, HEAD", body: "OPTIONS", contains: true},
		{method: "GET", path: "/_PLUGIN/badsig/Args", status: 500, body: `GETArgsHandler has type func(int) string; want func() string, func() (string, int) or func(http.ResponseWriter, *http.Request)`, contains: true},
		{method: "GET", path: "/_PLUGIN/badsig/Fine", status: 200, body: "fine"},
		{method: "GET", path: "/healthz", status: 200, body: `{"status":"ok"}` + "\n"},
		{method: "GET", path: "/nowhere", status: 404, body: `{"error":"not found"}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			got := srv.do(t, tt.method, tt.path, "")
			if got.status != tt.status {
				t.Errorf("status = %d, want %d (%s)", got.status, tt.status, got.body)
			}
			if tt.contains && !strings.Contains(got.body, tt.body) || !tt.contains && got.body != tt.body {
				t.Errorf("body = %q, want %q", got.body, tt.body)
			}
			if tt.contentType != "" && got.header.Get("Content-Type") != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got.header.Get("Content-Type"), tt.contentType)
			}
			if got.header.Get("Allow") != tt.allow {
				t.Errorf("Allow = %q, want %q", got.header.Get("Allow"), tt.allow)
			}
			if got.status >= 400 && !json.Valid([]byte(got.body)) {
				t.Errorf("error body is not JSON: %q", got.body)
			}
		})
	}
}

func TestCompileErrorThenFix(t *testing.T) {
	for _, debug := range []bool{false, true} {
		t.Run(fmt.Sprintf("debug=%v", debug), func(t *testing.T) {
			dir := plugintest.PluginPath(t, "hello")
			src := filepath.Join(dir, "src")
			// The subtest's own, the same in every run: a failed build is
			// remembered in memory only, so the broken source is built
			// (and fails) in every run, and the fix, which only has to be
			// served, comes from the shared cache after the first run.
			// (loader's TestBuildFailureIsRememberedUntilTheSourceChanges
			// counts the builds of a fix.)
			broken := plugintest.Own(t, "package main\n\nfunc GETFixHandler() string {\n\treturn 1 +\n}\n")
			plugintest.WriteFile(t, src, "fix.go", broken)
			srv := start(t, dir, debug)

			got := srv.do(t, "GET", "/_PLUGIN/fix/Fix", "")
			if got.status != 500 || !strings.Contains(got.body, `plugin \"fix\" failed to build`) {
				t.Fatalf("broken = %d %s", got.status, got.body)
			}
			if strings.Contains(got.body, dir) {
				t.Errorf("body leaks the plugin path: %s", got.body)
			}
			if hasDiag := strings.Contains(got.body, "fix.go:6:1: syntax error"); hasDiag != debug {
				t.Errorf("diagnostics in body = %v with debug %v: %s", hasDiag, debug, got.body)
			}
			logged := srv.logs.Events(map[string]any{"plugin": "fix", "message": "plugin build finished", "ok": false})
			if len(logged) != 1 || !strings.Contains(fmt.Sprint(logged[0]["output"]), "fix.go:6:1") {
				t.Errorf("the build failure is not logged with its diagnostics: %v", logged)
			}
			if got := srv.do(t, "GET", "/_PLUGIN/hello/Hello", ""); got.status != 200 {
				t.Errorf("a broken plugin affected another: %d", got.status)
			}

			plugintest.WriteFile(t, src, "fix.go", strings.Replace(broken, "1 +", `"fixed"`, 1))
			if got := srv.do(t, "GET", "/_PLUGIN/fix/Fix", ""); got.status != 200 || got.body != "fixed" {
				t.Errorf("after the fix: %d %s", got.status, got.body)
			}
		})
	}
}

func TestPanicsAreContained(t *testing.T) {
	srv := start(t, plugintest.PluginPath(t, "panics", "std"), false)
	for range 2 {
		got := srv.do(t, "GET", "/_PLUGIN/panics/Boom", "")
		if got.status != 500 || strings.Contains(got.body, "secret") || strings.Contains(got.body, "goroutine") || !strings.Contains(got.body, `"request_id"`) {
			t.Errorf("panic answered %d %s", got.status, got.body)
		}
		if got := srv.do(t, "GET", "/_PLUGIN/panics/Ok", ""); got.status != 200 || got.body != `{"ok":true}` {
			t.Errorf("after a panic: %d %s", got.status, got.body)
		}
	}
	failed := srv.logs.Events(map[string]any{"plugin": "panics", "message": "request failed"})
	if len(failed) != 2 || !strings.Contains(fmt.Sprint(failed[0]["stack"]), "goroutine") || !strings.Contains(fmt.Sprint(failed[0]["error"]), "secret-internal-detail") {
		t.Errorf("panics not logged with value and stack: %v", failed)
	}

	if got := srv.do(t, "GET", "/_PLUGIN/std/Boom", ""); got.status != 500 || !json.Valid([]byte(got.body)) {
		t.Errorf("standard panic answered %d %s", got.status, got.body)
	}
	// A panic after the handler wrote its status cannot change it: the
	// connection is aborted, so that nothing passes for a whole answer.
	if resp, err := http.Get(srv.url + "/_PLUGIN/std/LateBoom"); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("late panic: a whole %d response", resp.StatusCode)
		}
	}
	if ev := srv.logs.Events(map[string]any{"plugin": "std", "func": "LateBoom", "message": "request", "aborted": true}); len(ev) != 1 {
		t.Errorf("the aborted request is not marked in the access log: %s", srv.logs)
	}
	if got := srv.do(t, "GET", "/_PLUGIN/std/Header?id=1", ""); got.status != 200 {
		t.Errorf("after standard panics: %d", got.status)
	}
}

// TestPanicDetailsInDebug: in debug mode a panic's body says what and
// where, never the stack.
func TestPanicDetailsInDebug(t *testing.T) {
	srv := start(t, plugintest.PluginPath(t, "panics"), true)
	got := srv.do(t, "GET", "/_PLUGIN/panics/Boom", "")
	if got.status != 500 || !strings.Contains(got.body, `"detail":"secret-internal-detail"`) || !strings.Contains(got.body, `"site":"panics.go:8"`) || strings.Contains(got.body, "goroutine") {
		t.Errorf("debug panic answered %d %s", got.status, got.body)
	}
}

// rawGet sends path exactly as given, bypassing client-side cleaning.
func rawGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHostileNames(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	// Bait outside src: a traversal that worked would build it.
	plugintest.WriteFile(t, dir, "bait.go", "package main\n\nfunc GETHelloHandler() string { return \"escaped\" }\n")
	srv := start(t, dir, true)
	corpus := []string{
		"/_PLUGIN/..%2Fbait/Hello",
		"/_PLUGIN/%2e%2e%2fbait/Hello",
		"/_PLUGIN/%2e%2e/Hello",
		"/_PLUGIN/../bait/Hello",
		"/_PLUGIN/./hello/Hello",
		"/_PLUGIN/hello.go/Hello",
		"/_PLUGIN/hello.so/Hello",
		"/_PLUGIN/hello%00/Hello",
		"/_PLUGIN/hello%00.go/Hello",
		"/_PLUGIN/hel%5Clo/Hello",
		"/_PLUGIN/%E2%80%AEolleh/Hello",     // right-to-left override
		"/_PLUGIN/h%D0%B5llo/Hello",         // Cyrillic e
		"/_PLUGIN/%EF%BC%8E%EF%BC%8E/Hello", // fullwidth dots
		"/_PLUGIN/hello%E2%88%95x/Hello",    // division slash
		"/_PLUGIN/hello/Hel.lo",
		"/_PLUGIN/hello/Hello%2F..",
		"/_PLUGIN/-hello/Hello",
		"/_PLUGIN/" + strings.Repeat("a", 65) + "/Hello",
		"/_PLUGIN/hello/" + strings.Repeat("A", 65),
		"/_PLUGIN/%252e%252e/Hello",
		"/_PLUGIN/hello%20/Hello",
		"/_PLUGIN/~/Hello",
		"/_PLUGIN/$HOME/Hello",
	}
	for _, path := range corpus {
		status, body := rawGet(t, srv.addr, path)
		if status != 400 && status != 301 && status != 404 {
			t.Errorf("%s: status %d, want 400 (or a redirect)", path, status)
		}
		if strings.Contains(body, dir) || strings.Contains(body, "escaped") {
			t.Errorf("%s: body leaks: %s", path, body)
		}
	}
	for _, ev := range srv.logs.Events(map[string]any{"message": "plugin build started"}) {
		t.Errorf("a hostile name reached the builder: %v", ev)
	}
}

func TestSimultaneousFirstRequestsBuildOnce(t *testing.T) {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "once.go",
		plugintest.Unique(t, "package main\n\nfunc GETOnceHandler() string { return \"once\" }\n"))
	srv := start(t, dir, false)
	const n = 20
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for range n {
		wg.Go(func() {
			resp, err := http.Get(srv.url + "/_PLUGIN/once/Once")
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Errorf("status %d", s)
		}
	}
	if b := srv.builds("once"); b != 1 {
		t.Errorf("%d first requests ran %d builds, want 1", n, b)
	}
}

func TestShutdownLetsInFlightRequestsFinish(t *testing.T) {
	srv := start(t, plugintest.PluginPath(t, "std"), false)
	if got := srv.do(t, "GET", "/_PLUGIN/std/Slow?d=0s", ""); got.status != 200 {
		t.Fatalf("warm-up: %d %s", got.status, got.body)
	}
	done := make(chan response, 1)
	go func() {
		resp, err := http.Get(srv.url + "/_PLUGIN/std/Slow?d=700ms")
		if err != nil {
			done <- response{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- response{status: resp.StatusCode, body: string(b)}
	}()
	srv.waitInFlight(t, 1) // the request is in the handler
	start := time.Now()
	if err := srv.stop(); err != nil {
		t.Fatalf("Serve returned %v", err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("Serve returned after %s, before the in-flight request finished", waited)
	}
	if got := <-done; got.status != 200 || got.body != "done" {
		t.Errorf("in-flight request got %d %q", got.status, got.body)
	}
	if _, err := http.Get(srv.url + "/healthz"); err == nil {
		t.Error("the server still accepts connections after shutdown")
	}
}

func TestMissingSourceDirectoryIsNotFatal(t *testing.T) {
	root := t.TempDir()
	// Production defaults but for the shared artifact cache: the task
	// store defaults to <pluginpath>/.plugind/tasks.
	srv := startConfig(t, loadConfig(t, filepath.Join(root, "nothing"), ""))
	if got := srv.do(t, "GET", "/_PLUGIN/hello/Hello", ""); got.status != 404 {
		t.Errorf("status = %d", got.status)
	}
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	// The one thing the server creates is its durable task store; the
	// source directory stays missing.
	var created []string
	err := filepath.WalkDir(root, func(path string, _ os.DirEntry, err error) error {
		if rel, _ := filepath.Rel(root, path); rel != "." {
			created = append(created, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nothing", "nothing/.plugind", "nothing/.plugind/tasks", "nothing/.plugind/tasks/tasks.db"}
	if !slices.Equal(created, want) {
		t.Errorf("the server created %q, want only its task store %q", created, want)
	}
}

// waitInFlight waits, with a bound, until n requests besides the
// metrics scrape that counts them are being served.
func (r *running) waitInFlight(t *testing.T, n int) {
	t.Helper()
	want := fmt.Sprintf("\nplugind_requests_in_flight %d\n", n+1)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got := r.do(t, "GET", "/metrics", ""); strings.Contains(got.body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never %d requests in flight", n)
		}
	}
}
