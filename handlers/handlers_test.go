package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// fakePlugins answers every lookup with err and records the calls.
type fakePlugins struct {
	err   error
	calls []string
}

func (f *fakePlugins) List() []loader.Info {
	return []loader.Info{{Name: "p", Kind: loader.KindFile, State: loader.StateUnbuilt}}
}

func (f *fakePlugins) Resolve(_ context.Context, name, fn, method string) (Handler, error) {
	f.calls = append(f.calls, method+" "+name+"/"+fn)
	return nil, f.err
}

func TestWriteError(t *testing.T) {
	panicked := &loader.Error{Kind: loader.ErrPanic, Plugin: "p", Msg: "p panicked", Err: errors.New("panic: token=abc"),
		Detail: "token=abc", Site: "boom.go:12", Stack: []byte("goroutine 1")}
	build := &loader.Error{Kind: loader.ErrBuild, Plugin: "p", Msg: `plugin "p" failed to build`,
		Err: errors.New("exit status 1"), Output: "p.go:3:1: syntax error"}
	tests := []struct {
		name       string
		err        error
		debug      bool
		status     int
		body       string
		allow      string
		logStack   bool
		notInBody  string
		retryAfter string
		level      string // of the log event; "" is "error"
	}{
		{name: "bad name", err: &loader.Error{Kind: loader.ErrBadName, Msg: "invalid plugin name"}, status: 400,
			body: `{"error":"invalid plugin name"}`},
		{name: "not found", err: &loader.Error{Kind: loader.ErrNotFound, Plugin: "p", Msg: `plugin "p" not found`}, status: 404,
			body: `{"error":"plugin \"p\" not found","plugin":"p"}`},
		{name: "no handler", err: &loader.Error{Kind: loader.ErrNoHandler, Plugin: "p", Msg: "no handler"}, status: 404,
			body: `{"error":"no handler","plugin":"p"}`},
		{name: "method", err: &loader.Error{Kind: loader.ErrMethodNotAllowed, Plugin: "p", Msg: "no POST", Allowed: []string{"GET", "HEAD"}}, status: 405,
			body: `{"error":"no POST","plugin":"p"}`, allow: "GET, HEAD"},
		{name: "build, debug off", err: build, status: 500,
			body: `{"error":"plugin \"p\" failed to build","plugin":"p","request_id":"rid","hint":"the compiler's diagnostics are in the server log, on the admin page (/_ADMIN/), and printed by ` + "`plugind build p`" + `"}`},
		{name: "build, debug on", err: build, debug: true, status: 500,
			body: `{"error":"plugin \"p\" failed to build","plugin":"p","request_id":"rid","diagnostics":"p.go:3:1: syntax error"}`},
		{name: "open hides the path", err: &loader.Error{Kind: loader.ErrOpen, Plugin: "p", Msg: `plugin "p" could not be loaded`, Err: errors.New("/srv/secret/x.so: bad ELF")}, status: 500,
			body: `{"error":"plugin \"p\" could not be loaded","plugin":"p","request_id":"rid"}`, notInBody: "/srv"},
		{name: "panic hides value and stack", err: panicked, status: 500,
			body: `{"error":"p panicked","plugin":"p","request_id":"rid"}`, logStack: true, notInBody: "token"},
		{name: "panic, debug: value and site, not stack", err: panicked, debug: true, status: 500,
			body: `{"error":"p panicked","plugin":"p","request_id":"rid","detail":"token=abc","site":"boom.go:12"}`, logStack: true, notInBody: "goroutine"},
		{name: "signature", err: &loader.Error{Kind: loader.ErrSignature, Plugin: "p", Msg: "GETXHandler has type func(int)"}, status: 500,
			body: `{"error":"GETXHandler has type func(int)","plugin":"p","request_id":"rid"}`},
		{name: "unsupported", err: &loader.Error{Kind: loader.ErrUnsupported, Plugin: "p", Msg: "no plugins on windows"}, status: 501,
			body: `{"error":"no plugins on windows","plugin":"p","request_id":"rid"}`},
		{name: "invalid status", err: &loader.Error{Kind: loader.ErrStatus, Plugin: "p", Msg: `plugin "p": GETXHandler returned status 42; want 200-599 (or 0 for 200)`}, status: 500,
			body: `{"error":"plugin \"p\": GETXHandler returned status 42; want 200-599 (or 0 for 200)","plugin":"p","request_id":"rid"}`},
		{name: "still building", err: &loader.Error{Kind: loader.ErrBuilding, Plugin: "p", Msg: "p is still being built", Err: context.DeadlineExceeded}, status: 503,
			body: `{"error":"p is still being built","plugin":"p","request_id":"rid"}`, retryAfter: "1", level: "warn"},
		{name: "still building, estimated", err: &loader.Error{Kind: loader.ErrBuilding, Plugin: "p", Msg: "p is still being built", RetryAfter: 12300 * time.Millisecond}, status: 503,
			body: `{"error":"p is still being built","plugin":"p","request_id":"rid"}`, retryAfter: "13", level: "warn"},
		{name: "client gone", err: fmt.Errorf("waiting: %w", context.Canceled), status: 499,
			body: `{"error":"the request was cancelled"}`, level: "debug"},
		{name: "client gone under a timeout", err: fmt.Errorf("waiting for plugin: %w", context.Canceled), status: 499,
			body: `{"error":"the request was cancelled"}`, level: "debug"},
		{name: "incompatible", err: &loader.Error{Kind: loader.ErrIncompatible, Plugin: "p", Msg: "p was built for a different server: -race: plugin true, server (none)"}, status: 500,
			body: `{"error":"p was built for a different server: -race: plugin true, server (none)","plugin":"p","request_id":"rid"}`},
		{name: "init hides the plugin's text", err: &loader.Error{Kind: loader.ErrInit, Plugin: "p", Msg: "p: Init failed", Detail: "dsn=postgres://u:pw@db"}, status: 500,
			body: `{"error":"p: Init failed","plugin":"p","request_id":"rid"}`, notInBody: "pw@db"},
		{name: "init, debug", err: &loader.Error{Kind: loader.ErrInit, Plugin: "p", Msg: "p: Init failed", Detail: "no db"}, debug: true, status: 500,
			body: `{"error":"p: Init failed","plugin":"p","request_id":"rid","detail":"no db"}`},
		{name: "unclassified", err: errors.New("open /etc/secret: denied"), status: 500,
			body: `{"error":"Internal Server Error","request_id":"rid"}`, notInBody: "/etc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &plugintest.Log{}
			s := &Server{Plugins: &fakePlugins{err: tt.err}, Log: zerolog.New(logs), Debug: tt.debug}
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/_PLUGIN/p/X", nil)
			req.Header.Set("X-Request-Id", "rid")
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d", rec.Code, tt.status)
			}
			if got := strings.TrimSpace(rec.Body.String()); got != tt.body {
				t.Errorf("body = %s\nwant   %s", got, tt.body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			if tt.notInBody != "" && strings.Contains(rec.Body.String(), tt.notInBody) {
				t.Errorf("body leaks %q", tt.notInBody)
			}
			failed := logs.Events(map[string]any{"message": "request failed"})
			if len(failed) != 1 {
				t.Fatalf("want one 'request failed' log event, got %s", logs)
			}
			if _, ok := failed[0]["stack"]; ok != tt.logStack {
				t.Errorf("stack logged = %v, want %v", ok, tt.logStack)
			}
			level := tt.level
			switch {
			case level != "":
			case tt.status >= 500:
				level = "error"
			default:
				level = "debug" // the client's mistake
			}
			if failed[0]["level"] != level {
				t.Errorf("logged at %v, want %s", failed[0]["level"], level)
			}
			if failed[0]["plugin"] != "p" || failed[0]["func"] != "X" {
				t.Errorf("log event lacks plugin and func: %v", failed[0])
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	tests := []struct {
		path   string
		status int
		calls  []string // lookups that reached the plugin source
	}{
		{path: "/_PLUGIN/hello/Hello", status: 404, calls: []string{"GET hello/Hello"}},
		{path: "/_PLUGIN/a-b_c/X9", status: 404, calls: []string{"GET a-b_c/X9"}},
		{path: "/_PLUGIN/hello/Hello/extra", status: 400},
		{path: "/_PLUGIN/hello", status: 400},
		{path: "/_PLUGIN/", status: 400},
		{path: "/_PLUGIN/a%2Fb/Hello", status: 400},
		{path: "/_PLUGIN/hello/", status: 400},
		{path: "/_PLUGIN/../../etc/passwd", status: 301},
		{path: "/_PLUGIN//hello/Hello", status: 301},
		{path: "/nothing/here", status: 404},
		{path: "/_PLUGINx/a/b", status: 404},
		{path: "/healthz", status: 200},
		{path: "/readyz", status: 200},
		{path: "/_PLUGINS", status: 403}, // nothing configured: loopback only
		{path: "/_health", status: 200},
		{path: "/_PLUGIN", status: 400},
		{path: "/_PLUGINSX", status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			f := &fakePlugins{err: &loader.Error{Kind: loader.ErrNotFound, Msg: "not found"}}
			s := &Server{Plugins: f, Log: zerolog.Nop()}
			req := httptest.NewRequest("GET", "/", nil)
			req.URL.RawPath, req.URL.Path = tt.path, mustUnescape(t, tt.path)
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d (body %s)", rec.Code, tt.status, rec.Body)
			}
			if !slices.Equal(f.calls, tt.calls) {
				t.Errorf("plugin lookups = %q, want %q", f.calls, tt.calls)
			}
			if rec.Code != 301 && !json.Valid(rec.Body.Bytes()) {
				t.Errorf("body is not JSON: %q", rec.Body)
			}
		})
	}
}

func TestReadiness(t *testing.T) {
	rd := Readiness{Status: "starting", WarmUp: "running"}
	s := &Server{Plugins: &fakePlugins{}, Log: zerolog.Nop(), Ready: func(context.Context) Readiness { return rd }}
	for _, want := range []struct {
		status int
		body   string
	}{
		{503, `{"ready":false,"status":"starting","warmup":"running"}`},
		{200, `{"ready":true,"status":"ready","warmup":"done"}`},
	} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != want.status || strings.TrimSpace(rec.Body.String()) != want.body {
			t.Errorf("readyz = %d %s, want %d %s", rec.Code, rec.Body, want.status, want.body)
		}
		rd = Readiness{Ready: true, Status: "ready", WarmUp: "done"}
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"ok"`) {
		t.Errorf("healthz = %d %s", rec.Code, rec.Body)
	}
}

func mustUnescape(t *testing.T, p string) string {
	t.Helper()
	req, err := http.NewRequest("GET", "http://x"+p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req.URL.Path
}

// TestServersShareNoRouteState: a process may run several servers (the
// server package's tests start many, some at once): building one's router
// while another serves must not race. mux's Route.Methods upper-cases the
// method list it is given in place, and the route table's lists were one
// package-level slice.
func TestServersShareNoRouteState(t *testing.T) {
	newServer := func() *Server {
		return &Server{Plugins: &fakePlugins{err: &loader.Error{Kind: loader.ErrNotFound, Msg: "not found"}}, Log: zerolog.Nop()}
	}
	serving := newServer().Handler()
	var bad atomic.Int32
	stop := plugintest.Busy(2, func() {
		rec := httptest.NewRecorder()
		serving.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != http.StatusOK {
			bad.Add(1)
		}
	})
	for range 20 {
		newServer().Handler()
	}
	stop()
	if n := bad.Load(); n != 0 {
		t.Errorf("%d GET /healthz answered other than 200 while other servers were built", n)
	}
}
