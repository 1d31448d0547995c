package handlers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/metrics"
	"github.com/plugind/plugind/tasks"
)

// okPlugins resolves every name to a handler that answers 200 and
// counts the calls that reached it.
type okPlugins struct{ calls atomic.Int32 }

func (p *okPlugins) Resolve(context.Context, string, string, string) (Handler, error) {
	return (*okHandler)(p), nil
}

// okHandler is okPlugins' handler: a pointer, as Plugins requires.
type okHandler okPlugins

func (h *okHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	h.calls.Add(1)
	_, err := w.Write([]byte("ok"))
	return err
}

func (p *okPlugins) List() []loader.Info { return nil }

type fakeTasks struct{}

func (fakeTasks) Get(id string) (tasks.Task, error)    { return tasks.Task{ID: id}, nil }
func (fakeTasks) Cancel(id string) (tasks.Task, error) { return tasks.Task{ID: id}, nil }

// closedStream is an event stream that ends at once.
type closedStream struct{}

func (closedStream) ServeHTTP(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

// TestAccessMatrix runs every route against every auth configuration with
// every kind of caller, and checks each outcome: the route table's access
// classes, end to end through the router.
func TestAccessMatrix(t *testing.T) {
	const jwtKey = "jwt-secret"
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(jwtKey))
	if err != nil {
		t.Fatal(err)
	}
	// Callers, in the order of each expectation's letters. All but the
	// second come from another host.
	callers := []struct {
		name   string
		remote string
		header [2]string
	}{
		{"anonymous", "192.0.2.1:1234", [2]string{}},
		{"anonymous on loopback", "127.0.0.1:1234", [2]string{}},
		{"operator key", "192.0.2.1:1234", [2]string{"X-API-Key", "op-key"}},
		{"private's key", "192.0.2.1:1234", [2]string{"X-API-Key", "private-key"}},
		{"token", "192.0.2.1:1234", [2]string{"Authorization", "Bearer " + tok}},
	}
	routes := []string{"/_PLUGIN/open/X", "/_PLUGIN/private/X", "/_PLUGIN/public/X", "/healthz", "/_health", "/readyz", "/metrics", "/_PLUGINS", "/_TASKS/ab12", "/_EVENTS", "/_ADMIN/", "/_ADMIN/pprof/"}
	opKeys := []string{"op-key"}
	pluginKeys := map[string][]string{"private": {"private-key"}}
	jwtOn := auth.Config{JWTKey: jwtKey, JWTAlgo: "HS256", JWTDefault: true}
	// o: served; u: 401; f: 403. One letter per caller, one string per route.
	const (
		all      = "ooooo"
		opOnly   = "uuouu"
		closed   = "uuuuu"
		loopback = "fofff"
	)
	tests := []struct {
		name       string
		cfg        auth.Config
		authProbes bool
		want       []string // per route
	}{
		{"none", auth.Config{},
			false, []string{all, all, all, all, all, all, all, loopback, loopback, loopback, loopback, loopback}},
		{"operator keys", auth.Config{APIKeys: opKeys},
			false, []string{opOnly, opOnly, opOnly, all, all, all, all, opOnly, opOnly, opOnly, opOnly, opOnly}},
		{"plugin keys only", auth.Config{PluginKeys: pluginKeys},
			false, []string{all, "uuuou", all, all, all, all, all, closed, closed, closed, closed, closed}},
		{"JWT", jwtOn,
			false, []string{"uuuuo", "uuuuo", "uuuuo", all, all, all, all, closed, closed, closed, closed, closed}},
		{"JWT and whitelist", auth.Config{JWTKey: jwtKey, JWTAlgo: "HS256", JWTDefault: true, Whitelist: []string{`^/_PLUGIN/public/`, `^/_PLUGINS`, `^/_ADMIN`}},
			false, []string{"uuuuo", "uuuuo", all, all, all, all, all, closed, closed, closed, closed, closed}},
		{"keys and JWT", auth.Config{APIKeys: opKeys, PluginKeys: pluginKeys, JWTKey: jwtKey, JWTAlgo: "HS256", JWTDefault: true},
			false, []string{"uuouo", "uuoou", "uuouo", all, all, all, all, opOnly, opOnly, opOnly, opOnly, opOnly}},
		{"keys and JWT, probes and metrics guarded", auth.Config{APIKeys: opKeys, PluginKeys: pluginKeys, JWTKey: jwtKey, JWTAlgo: "HS256", JWTDefault: true},
			true, []string{"uuouo", "uuoou", "uuouo", opOnly, opOnly, opOnly, opOnly, opOnly, opOnly, opOnly, opOnly, opOnly}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := auth.New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			plugins := &okPlugins{}
			var admin atomic.Int32
			s := &Server{
				Plugins: plugins, Log: zerolog.Nop(), Auth: a, AuthProbes: tt.authProbes, AuthMetrics: tt.authProbes,
				Metrics: metrics.New(func() []loader.Stat { return nil }), MetricsPath: "/metrics",
				Tasks: fakeTasks{}, Events: closedStream{},
				Admin:    http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { admin.Add(1) }),
				Profiles: true,
			}
			h := s.Handler()
			for i, path := range routes {
				for j, c := range callers {
					want := tt.want[i][j]
					before := plugins.calls.Load() + admin.Load()
					req := httptest.NewRequest("GET", path, nil)
					req.RemoteAddr = c.remote
					if c.header[0] != "" {
						req.Header.Set(c.header[0], c.header[1])
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					got := byte('?')
					switch rec.Code {
					case http.StatusOK:
						got = 'o'
					case http.StatusUnauthorized:
						got = 'u'
						if rec.Header().Get("WWW-Authenticate") == "" {
							t.Errorf("%s by %s: 401 without WWW-Authenticate", path, c.name)
						}
					case http.StatusForbidden:
						got = 'f'
					}
					if got != want {
						t.Errorf("%s by %s: %d %s, want %c", path, c.name, rec.Code, strings.TrimSpace(rec.Body.String()), want)
					}
					if reached := plugins.calls.Load() + admin.Load(); got != 'o' && reached != before {
						t.Errorf("%s by %s: refused, yet the handler ran", path, c.name)
					}
				}
			}
		})
	}
}

// TestMiddlewareScope: middleware plugins wrap plugin routes, not the
// server's own, through one instance.
func TestMiddlewareScope(t *testing.T) {
	built := 0
	mark := func(next http.Handler) http.Handler {
		built++
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Middleware", "yes")
			next.ServeHTTP(w, r)
		})
	}
	s := &Server{Plugins: &okPlugins{}, Log: zerolog.Nop(), Middleware: []func(http.Handler) http.Handler{mark}}
	h := s.Handler()
	// One instance: the plugin route's two ways in (direct dispatch and
	// the router) share its chain, so a middleware's state is not split.
	if built != 1 {
		t.Errorf("the middleware was instantiated %d times; want once", built)
	}
	for path, want := range map[string]string{"/_PLUGIN/p/X": "yes", "/healthz": "", "/readyz": "", "/_PLUGINS": "", "/nope": ""} {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "127.0.0.1:1"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if got := rec.Header().Get("X-Middleware"); got != want {
			t.Errorf("%s: middleware ran = %q, want %q", path, got, want)
		}
	}
}

// TestReadyzPluginHealth: anyone learns which plugins fail, only operators
// why; hooks run once per TTL however many probes arrive, one check at a
// time.
func TestReadyzPluginHealth(t *testing.T) {
	var checks atomic.Int32
	var gen atomic.Uint64
	release := make(chan struct{})
	a, _ := auth.New(auth.Config{APIKeys: []string{"op-key"}})
	s := &Server{Plugins: &okPlugins{}, Log: zerolog.Nop(), Auth: a, HealthTTL: time.Hour, Generation: gen.Load,
		Health: func(ctx context.Context) map[string]string {
			checks.Add(1)
			<-release
			return map[string]string{"good": "ok", "bad": "db password rejected for user admin"}
		}}
	h := s.Handler()
	probe := func(key string) string {
		req := httptest.NewRequest("GET", "/readyz", nil)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	var wg sync.WaitGroup
	bodies := make([]string, 20)
	for i := range bodies {
		wg.Go(func() { bodies[i] = probe("") })
	}
	// Every probe is waiting on the one check; let it finish.
	for checks.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for _, b := range bodies {
		if !strings.Contains(b, `"bad":"failing"`) || !strings.Contains(b, `"good":"ok"`) || strings.Contains(b, "password") {
			t.Fatalf("anonymous probe: %s", b)
		}
	}
	if b := probe("op-key"); !strings.Contains(b, "db password rejected") {
		t.Errorf("operator probe lacks the hook's error: %s", b)
	}
	if n := checks.Load(); n != 1 {
		t.Errorf("%d health checks for 21 probes within the TTL, want 1", n)
	}
	gen.Add(1) // a plugin loaded: the cached results are stale
	probe("")
	if n := checks.Load(); n != 2 {
		t.Errorf("%d health checks after a change, want 2", n)
	}
}

// TestListingRedacted: /_PLUGINS shows hook errors to operators only.
func TestListingRedacted(t *testing.T) {
	a, _ := auth.New(auth.Config{APIKeys: []string{"op-key"}})
	info := []loader.Info{{Name: "p", Health: "secret-dsn unreachable", LastError: "p: Init failed", LastErrorDetail: "secret-dsn refused"}}
	s := &Server{Plugins: listPlugins(info), Log: zerolog.Nop(), Auth: a}
	h := s.Handler()
	req := httptest.NewRequest("GET", "/_PLUGINS", nil)
	req.Header.Set("X-API-Key", "op-key")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), "secret-dsn") {
		t.Errorf("operator listing: %s", rec.Body)
	}
	s = &Server{Plugins: listPlugins(info), Log: zerolog.Nop(), Debug: true}
	req = httptest.NewRequest("GET", "/_PLUGINS", nil)
	req.RemoteAddr = "127.0.0.1:1"
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), "secret-dsn") {
		t.Errorf("debug listing: %s", rec.Body)
	}
	s = &Server{Plugins: listPlugins(info), Log: zerolog.Nop()}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 || strings.Contains(rec.Body.String(), "secret-dsn") || !strings.Contains(rec.Body.String(), `"health":"failing"`) || !strings.Contains(rec.Body.String(), "Init failed") {
		t.Errorf("local listing without credentials: %d %s", rec.Code, rec.Body)
	}
}

type listPlugins []loader.Info

func (l listPlugins) Resolve(context.Context, string, string, string) (Handler, error) {
	return nil, &loader.Error{Kind: loader.ErrNotFound, Msg: "not found"}
}
func (l listPlugins) List() []loader.Info { return slices.Clone(l) }
