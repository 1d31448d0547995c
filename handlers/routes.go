package handlers

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"golang.org/x/sync/singleflight"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/loader"
)

// route is one row of the route table: a path, the methods it answers,
// who may call it, and what serves it. Everything that decides access
// (credentials, CORS, middleware plugins, body limits) follows from the
// class in chain, so that no route can be added without choosing one.
type route struct {
	path    string          // a mux path template, a prefix, or a name for match
	prefix  bool            // path is a prefix
	match   mux.MatcherFunc // instead of path
	methods []string        // nil: any
	class   auth.Class
	serve   http.HandlerFunc
}

var getHead = []string{http.MethodGet, http.MethodHead}

// routes is the route table: every path the server answers.
func (s *Server) routes() []route {
	probe := auth.Public
	if s.AuthProbes {
		probe = auth.Operator
	}
	rs := []route{
		// First: dispatch serves it without mux, and mux tries routes in order.
		{path: "/_PLUGIN/{file}/{func}", match: matchPluginRoute, class: auth.Plugin, serve: s.plugin},
		{path: "/healthz", methods: getHead, class: probe, serve: s.healthz},
		{path: "/_health", methods: getHead, class: probe, serve: s.healthz}, // prestd's
		{path: "/readyz", methods: getHead, class: probe, serve: s.readyz},
		{path: "/_PLUGINS", methods: getHead, class: auth.Operator, serve: s.list},
	}
	if s.Metrics != nil {
		class := auth.Public
		if s.AuthMetrics {
			class = auth.Operator
		}
		rs = append(rs, route{path: s.MetricsPath, methods: getHead, class: class, serve: s.Metrics.Handler().ServeHTTP})
	}
	if s.Tasks != nil {
		rs = append(rs, route{path: "/_TASKS/{id:[0-9a-f]{1,64}}", methods: []string{http.MethodGet, http.MethodHead, http.MethodDelete}, class: auth.Operator, serve: s.task})
	}
	if s.Events != nil {
		rs = append(rs, route{path: "/_EVENTS", methods: []string{http.MethodGet}, class: auth.Operator, serve: s.events})
	}
	if s.Profiles { // before the admin page's prefix: mux tries routes in order
		rs = append(rs, route{path: profilesPath, prefix: true, methods: []string{http.MethodGet}, class: auth.Operator, serve: s.profiles})
	}
	if s.Admin != nil {
		rs = append(rs, route{path: "/_ADMIN/", prefix: true, class: auth.Operator, serve: s.Admin.ServeHTTP})
		rs = append(rs, route{path: "/_ADMIN", class: auth.Operator, serve: http.RedirectHandler("/_ADMIN/", http.StatusMovedPermanently).ServeHTTP})
	}
	// Any other path under /_PLUGIN/ is malformed, not missing: 400 tells
	// the caller why. It names no plugin, so it needs no credentials.
	badPath := func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "plugin paths are /_PLUGIN/{file}/{func}, with names of letters, digits, '_' and '-'"})
	}
	rs = append(rs,
		route{path: "/_PLUGIN/", prefix: true, class: auth.Public, serve: badPath},
		route{path: "/_PLUGIN", class: auth.Public, serve: badPath},
	)
	return rs
}

// chain puts rt's handler behind what its class requires. Plugin routes:
// CORS first (browsers send preflights without credentials), then the
// plugin's credentials, the body limit and the middleware plugins. The
// server's own routes: credentials and the body limit, no CORS (the
// admin page is same-origin) and no middleware plugins (prestd's
// middleware guards prestd's API, which the plugins are here; the
// server's routes have their own class).
func (s *Server) chain(rt route) http.Handler {
	var h http.Handler = rt.serve
	if rt.class == auth.Plugin {
		for i := len(s.Middleware) - 1; i >= 0; i-- {
			h = s.contain(s.Middleware[i], h)
		}
	}
	h = s.limitBody(h)
	h = s.guard(rt.class, h)
	if rt.class == auth.Plugin {
		h = s.corsHandler(h)
	}
	return h
}

// guard lets a request in as its class allows, noting who it was let in
// as, or answers 401 (with WWW-Authenticate) or 403.
func (s *Server) guard(class auth.Class, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := infoFrom(r.Context())
		p, err := s.Auth.Decide(r, class, info.file)
		if err != nil {
			if errors.Is(err, auth.ErrUnauthorized) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="plugind"`)
			}
			s.writeError(w, r, err)
			return
		}
		info.principal = p
		next.ServeHTTP(w, r)
	})
}

// splitPluginPath parses /_PLUGIN/{file}/{func}: each a non-empty
// segment, and nothing after. Names are checked later (ValidName), so
// that a bad one gets 400 rather than 404.
func splitPluginPath(path string) (file, fn string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/_PLUGIN/")
	if !ok {
		return "", "", false
	}
	file, fn, ok = strings.Cut(rest, "/")
	if !ok || file == "" || fn == "" || strings.Contains(fn, "/") {
		return "", "", false
	}
	return file, fn, true
}

// matchPluginRoute matches the plugin route from what the access layer
// parsed: the path is parsed once per request. mux has cleaned the path
// (and redirected an unclean one) before matching.
func matchPluginRoute(r *http.Request, _ *mux.RouteMatch) bool {
	info := infoFrom(r.Context())
	return info != nil && info.pluginRoute
}

// contain applies middleware mw to next. A panic in it is answered with a
// JSON 500 while nothing has been written; once the response has begun
// it aborts the connection, since a status is out and an error appended
// to the body would pass for part of it.
func (s *Server) contain(mw func(http.Handler) http.Handler, next http.Handler) http.Handler {
	h := mw(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.fail(w, r, loader.PanicError(infoFrom(r.Context()).file, "a middleware plugin panicked", v))
		}()
		h.ServeHTTP(w, r)
	})
}

// fail answers err, or, if the response has begun, logs it and aborts
// the connection.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if info := infoFrom(r.Context()); info != nil && info.started() {
		s.logError(r, err, http.StatusInternalServerError)
		panic(http.ErrAbortHandler)
	}
	s.writeError(w, r, err)
}

// healthCache runs the plugins' Health hooks at most once per ttl and one
// check at a time: probes read the last results, so a probe storm runs
// no hook and starts no goroutine of its own.
type healthCache struct {
	check      func(context.Context) map[string]string
	ttl        time.Duration
	generation func() uint64 // nil: results age by ttl alone
	group      singleflight.Group

	mu   sync.Mutex // guards at, gen, last
	at   time.Time
	gen  uint64 // generation of last
	last map[string]string
}

// healthBound bounds one check of every plugin's hook.
const healthBound = 2 * time.Second

func (c *healthCache) get(ctx context.Context) map[string]string {
	if c.check == nil {
		return nil
	}
	ttl := c.ttl
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	var gen uint64
	if c.generation != nil {
		gen = c.generation()
	}
	c.mu.Lock()
	at, cached, last := c.at, c.gen, c.last
	c.mu.Unlock()
	if !at.IsZero() && time.Since(at) < ttl && cached == gen {
		return last
	}
	ch := c.group.DoChan("health", func() (any, error) {
		// Not the probe's context: a probe that leaves must not cancel
		// the check the next one will read.
		ctx, cancel := context.WithTimeout(context.Background(), healthBound)
		defer cancel()
		m := c.check(ctx)
		c.mu.Lock()
		c.at, c.gen, c.last = time.Now(), gen, m
		c.mu.Unlock()
		return m, nil
	})
	select {
	case r := <-ch:
		return r.Val.(map[string]string)
	case <-ctx.Done():
		return last
	}
}

// redactList drops plugin-written text from a listing: what a failure's
// plugin wrote, and hook errors.
func redactList(plugins []loader.Info) []loader.Info {
	out := make([]loader.Info, len(plugins))
	for i, p := range plugins {
		p.LastErrorDetail = ""
		if p.Health != "" && p.Health != "ok" {
			p.Health = "failing"
		}
		out[i] = p
	}
	return out
}
