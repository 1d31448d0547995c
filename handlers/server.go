package handlers

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/rs/zerolog"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/metrics"
)

// Handler is a plugin function at the loader boundary: an http.Handler
// that returns what went wrong instead of answering it, so that errors
// become statuses in one place (writeError). Both ABIs look like this;
// *loader.Handler implements it.
type Handler interface {
	ServeHTTP(w http.ResponseWriter, r *http.Request) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// ServeHTTP calls f.
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

// Plugins resolves a request to a plugin handler, loading the plugin if
// needed, and describes the plugins. Loader adapts *loader.Loader.
// Resolve's handlers must be comparable (pointers, not funcs): the server
// composes a plugin's limits around each handler once and keeps it.
type Plugins interface {
	Resolve(ctx context.Context, name, fn, method string) (Handler, error)
	List() []loader.Info
}

// Loader adapts l to Plugins.
func Loader(l *loader.Loader) Plugins { return loaderPlugins{l} }

type loaderPlugins struct{ *loader.Loader }

func (l loaderPlugins) Resolve(ctx context.Context, name, fn, method string) (Handler, error) {
	h, err := l.Handler(ctx, name, fn, method)
	if err != nil {
		return nil, err // not a typed nil in an interface
	}
	return h, nil
}

// Server serves plugins over HTTP.
type Server struct {
	Plugins Plugins
	Log     zerolog.Logger
	// Debug adds the compiler's diagnostics and plugin-written text
	// (panic values, Init errors) to error bodies for every caller;
	// without it only operators get them.
	Debug bool
	// Ready reports whether the server takes traffic, for /readyz. A nil
	// Ready is always ready.
	Ready func(ctx context.Context) Readiness
	// Health runs the plugins' Health hooks, for /readyz: each plugin's
	// "ok" or error. Results are cached for HealthTTL (default 5 s) and
	// one check runs at a time, however many probes arrive.
	Health    func(ctx context.Context) map[string]string
	HealthTTL time.Duration
	// Generation, if set, changes whenever plugins load, reload or go:
	// cached health results older than a change are not served.
	Generation func() uint64
	// Setup returns a plugin's settings, secrets and limits; nil: none.
	Setup func(name string) PluginSetup
	// Configured names the plugins with configured limits: they are
	// enforced from the first request, before the plugin is looked up.
	Configured []string
	// Middleware wraps the plugin routes, the first outermost.
	Middleware []func(http.Handler) http.Handler

	// Auth decides who may call what (see the route table); nil: nothing
	// is configured. AuthProbes puts the probes, AuthMetrics the metrics,
	// behind operator keys.
	Auth        *auth.Authenticator
	AuthProbes  bool
	AuthMetrics bool
	// TrustedProxies are the peers whose X-Forwarded-For and Forwarded
	// headers name the client in the access log.
	TrustedProxies []netip.Prefix
	// Metrics, if set, counts requests and is served at MetricsPath.
	Metrics     *metrics.Metrics
	MetricsPath string
	// CORS is the global policy for plugin routes; PluginCORS replace it
	// per plugin. None without origins.
	CORS       CORSPolicy
	PluginCORS map[string]CORSPolicy
	// SecurityHeaders adds nosniff, frame, referrer and CSP headers.
	SecurityHeaders bool
	CSP             string
	// Gzip compresses responses of at least GzipMinBytes.
	Gzip         bool
	GzipMinBytes int
	// MaxBodyBytes bounds every request body (413); 0: none.
	MaxBodyBytes int64
	// Tasks, if set, serves GET and DELETE /_TASKS/{id}.
	Tasks TaskStore
	// Events, if set, streams bus traffic at GET /_EVENTS (SSE).
	Events EventStream
	// Admin, if set, serves the admin page under /_ADMIN/.
	Admin http.Handler
	// Profiles serves the runtime's profiles (CPU, heap, goroutines, an
	// execution trace) under /_ADMIN/pprof/, an operator route, with or
	// without the admin page.
	Profiles bool
	// RequestStats, if set, is told of every request to a plugin, for the
	// admin page.
	RequestStats interface {
		RecordAt(plugin string, status int, d time.Duration, end time.Time)
	}

	states states
	health healthCache
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready  bool   `json:"ready"`
	Status string `json:"status"` // "ready", "starting", "shutting down"
	// WarmUp is the build cache warm-up: "running", "done", "failed" or
	// "off". It does not make the server unready: requests that need a
	// build during warm-up wait for it.
	WarmUp string `json:"warmup,omitempty"`
	// Plugins are the results of plugins' Health hooks: "ok" or, for
	// operators, the error; "failing" for anyone else, since a hook's error
	// is plugin-written text. They are reported, not counted against
	// readiness: one unhealthy plugin must not take the others out of a
	// load balancer.
	Plugins map[string]string `json:"plugins,omitempty"`
}

// Handler returns the server's root handler: security headers, gzip, the
// access log, then the router over the route table, each route behind
// its access class.
func (s *Server) Handler() http.Handler {
	if s.Auth == nil {
		s.Auth, _ = auth.New(auth.Config{}) // no credentials: cannot fail
	}
	s.health.check, s.health.ttl, s.health.generation = s.Health, s.HealthTTL, s.Generation
	for _, name := range s.Configured {
		s.state(name)
	}
	root := s.dispatch(s.routes())
	// Outermost first. The access recorder sits inside compression so
	// that it sees the handler's own writes: a failure after the first of
	// them aborts the connection rather than appending an error to a body
	// the compressor is still holding.
	return s.securityHeaders(s.compress(s.access(root)))
}

// dispatch serves rs: the plugin route, the first row and the one under
// load, directly for a request the access layer parsed as
// /_PLUGIN/{valid}/{valid} (a clean path, which mux would match to that
// row before any other), without mux's two request copies per match;
// everything else through the router.
//
// Each route's chain is built once and shared by both ways in: a chain
// holds the middleware plugins' instances, whose state must not split.
func (s *Server) dispatch(rs []route) http.Handler {
	chains := make([]http.Handler, len(rs))
	for i, rt := range rs {
		chains[i] = s.chain(rt)
	}
	r := s.router(rs, chains)
	plugin := chains[0]
	var malformed http.Handler
	for i, rt := range rs {
		if rt.prefix && rt.path == "/_PLUGIN/" {
			malformed = chains[i]
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		info := infoFrom(req.Context())
		switch {
		case info != nil && info.named:
			plugin.ServeHTTP(w, req)
		case encodedSlash(req.URL.RawPath) && strings.HasPrefix(req.URL.Path, "/_PLUGIN/"):
			// A name with an encoded slash is malformed, 400, also when
			// the decoded path is unclean: mux would clean
			// /_PLUGIN/hello/..%2F..%2F_PLUGINS and redirect it to
			// /_PLUGINS, out of the plugin namespace.
			malformed.ServeHTTP(w, req)
		default:
			r.ServeHTTP(w, req)
		}
	})
}

// encodedSlash reports whether an escaped path holds an encoded slash.
func encodedSlash(raw string) bool {
	return raw != "" && (strings.Contains(raw, "%2F") || strings.Contains(raw, "%2f"))
}

// router is the mux router over rs, route i behind chains[i].
func (s *Server) router(rs []route, chains []http.Handler) *mux.Router {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not found"})
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method not allowed"})
	})
	for i, rt := range rs {
		h := chains[i]
		var m *mux.Route
		switch {
		case rt.match != nil:
			m = r.MatcherFunc(rt.match).Handler(h)
		case rt.prefix:
			m = r.PathPrefix(rt.path).Handler(h)
		default:
			m = r.Handle(rt.path, h)
		}
		if len(rt.methods) > 0 {
			// A copy: Methods upper-cases the slice it is given in place,
			// and route tables share theirs (getHead), across servers too.
			m.Methods(slices.Clone(rt.methods)...)
		}
	}
	return r
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := Readiness{Ready: true, Status: "ready"}
	if s.Ready != nil {
		rd = s.Ready(r.Context())
	}
	if plugins := s.health.get(r.Context()); len(plugins) > 0 {
		operator := s.operator(r)
		rd.Plugins = make(map[string]string, len(plugins))
		for name, status := range plugins {
			if status != "ok" && !operator {
				status = "failing"
			}
			rd.Plugins[name] = status
		}
	}
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rd)
}

// list serves the admin listing: every plugin, its handlers, state,
// versions and the memory they hold. Plugin-written error text is for
// operators (and debug) only.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	plugins := s.Plugins.List()
	if !s.operator(r) {
		plugins = redactList(plugins)
	}
	writeJSON(w, http.StatusOK, map[string]any{"plugins": plugins})
}

// operator reports whether r may see what only operators see: with
// debug, anyone.
func (s *Server) operator(r *http.Request) bool {
	if s.Debug {
		return true
	}
	info := infoFrom(r.Context())
	return info != nil && info.principal == auth.OperatorPrincipal
}
