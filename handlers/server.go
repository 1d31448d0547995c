package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/rs/zerolog"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/metrics"
)

// Plugins resolves a request to a plugin handler, loading the plugin if
// needed, and describes the plugins. *loader.Loader implements it.
type Plugins interface {
	Handler(ctx context.Context, name, fn, method string) (*loader.Handler, error)
	List() []loader.Info
}

var _ Plugins = (*loader.Loader)(nil)

// Server serves plugins over HTTP.
type Server struct {
	Plugins Plugins
	Log     zerolog.Logger
	// Debug adds the compiler's diagnostics to build-failure bodies.
	Debug bool
	// Ready reports whether the server takes traffic, for /readyz. A nil
	// Ready is always ready.
	Ready func(ctx context.Context) Readiness
	// Setup returns a plugin's settings, secrets and limits; nil: none.
	Setup func(name string) PluginSetup
	// Configured names the plugins with configured limits: they are
	// enforced from the first request, before the plugin is looked up.
	Configured []string
	// Middleware wraps every route but the probes, the first outermost.
	Middleware []func(http.Handler) http.Handler

	// Auth, if set, guards every route but the probes and the metrics
	// (unless AuthProbes, AuthMetrics).
	Auth        *auth.Authenticator
	AuthProbes  bool
	AuthMetrics bool
	// Metrics, if set, counts requests and is served at MetricsPath.
	Metrics     *metrics.Metrics
	MetricsPath string
	// CORS is the global policy; PluginCORS replace it per plugin. None
	// without origins.
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
	// Closing, if set, is closed when the server starts shutting down:
	// long-lived responses (the event stream) end then, rather than hold
	// up the graceful shutdown.
	Closing <-chan struct{}
	// Admin, if set, serves the operator page under /_ADMIN/;
	// RequestStats, if set, is told of every plugin request, for it.
	Admin        http.Handler
	RequestStats interface {
		RecordAt(plugin string, status int, d time.Duration, end time.Time)
	}

	states states
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready  bool   `json:"ready"`
	Status string `json:"status"` // "ready", "starting", "shutting down"
	// WarmUp is the build cache warm-up: "running", "done", "failed" or
	// "off". It does not make the server unready: requests that need a
	// build during warm-up wait for it.
	WarmUp string `json:"warmup,omitempty"`
	// Plugins are the results of plugins' Health hooks ("ok" or the
	// error). They are reported, not counted against readiness: one
	// unhealthy plugin must not take the others out of a load balancer.
	Plugins map[string]string `json:"plugins,omitempty"`
}

// Handler returns the server's root handler: access log, the probes,
// then the middleware plugins around the router.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not found"})
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method not allowed"})
	})
	// The plugin route comes first: mux tries routes in order, and this is
	// the one under load. It is /_PLUGIN/{file}/{func} matched without a
	// path template: mux's regular expressions and their bookkeeping were
	// 5% of the plugin path's CPU under load.
	r.MatcherFunc(matchPluginRoute).HandlerFunc(s.plugin)
	r.HandleFunc("/_PLUGINS", s.list).Methods(http.MethodGet, http.MethodHead)
	if s.Tasks != nil {
		r.HandleFunc("/_TASKS/{id:[0-9a-f]{1,64}}", s.task).Methods(http.MethodGet, http.MethodHead, http.MethodDelete)
	}
	if s.Events != nil {
		r.HandleFunc("/_EVENTS", s.events).Methods(http.MethodGet)
	}
	if s.Admin != nil {
		r.PathPrefix("/_ADMIN/").Handler(s.Admin)
		r.Handle("/_ADMIN", s.Admin) // redirects to /_ADMIN/
	}
	badPath := func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "plugin paths are /_PLUGIN/{file}/{func}, with names of letters, digits, '_' and '-'"})
	}
	r.PathPrefix("/_PLUGIN/").HandlerFunc(badPath)
	r.HandleFunc("/_PLUGIN", badPath)

	for _, name := range s.Configured {
		s.state(name)
	}
	var app http.Handler = r
	for i := len(s.Middleware) - 1; i >= 0; i-- {
		app = s.contain(s.Middleware[i], app)
	}
	// Probes and metrics do not go through middleware plugins: a load
	// balancer has no API key a plugin would know.
	var metricsHandler http.Handler // built once, not per scrape
	if s.Metrics != nil {
		metricsHandler = s.Metrics.Handler()
	}
	routes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			s.healthz(w, r)
		case r.URL.Path == "/readyz":
			s.readyz(w, r)
		case s.Metrics != nil && r.URL.Path == s.MetricsPath:
			metricsHandler.ServeHTTP(w, r)
		default:
			app.ServeHTTP(w, r)
		}
	})
	// Outermost first: the access log sees every answer; headers and
	// compression apply to errors too; CORS answers preflights before
	// auth, as browsers send them without credentials.
	return s.access(s.securityHeaders(s.compress(s.corsHandler(s.authenticate(s.limitBody(routes))))))
}

// contain applies middleware mw to next, answering a panic in it with a
// JSON 500 instead of a dropped connection.
func (s *Server) contain(mw func(http.Handler) http.Handler, next http.Handler) http.Handler {
	h := mw(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v)
				}
				return
			}
			err := &loader.Error{Kind: loader.ErrPanic, Msg: "a middleware plugin panicked", Err: fmt.Errorf("panic: %v", v), Stack: debug.Stack()}
			if rec, ok := w.(*recorder); ok && rec.started() {
				s.logError(r, err, http.StatusInternalServerError)
				return
			}
			s.writeError(w, r, err)
		}()
		h.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := Readiness{Ready: true, Status: "ready"}
	if s.Ready != nil {
		rd = s.Ready(r.Context())
	}
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rd)
}

// list serves the admin listing: every plugin, its handlers, state,
// versions and the memory they hold.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"plugins": s.Plugins.List()})
}

// matchPluginRoute matches /_PLUGIN/{file}/{func}, each a non-empty
// segment, as the template would: names are checked by the handler, so
// that a bad one gets 400 rather than 404. mux has cleaned the path.
func matchPluginRoute(r *http.Request, m *mux.RouteMatch) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, "/_PLUGIN/")
	if !ok {
		return false
	}
	file, fn, ok := strings.Cut(rest, "/")
	if !ok || file == "" || fn == "" || strings.Contains(fn, "/") {
		return false
	}
	m.Vars = map[string]string{"file": file, "func": fn}
	return true
}

// plugin serves /_PLUGIN/{file}/{func}.
func (s *Server) plugin(w http.ResponseWriter, r *http.Request) {
	vars := mux.Vars(r)
	file, fn := vars["file"], vars["func"]
	if info := infoFrom(r.Context()); info != nil && loader.ValidName(file) && loader.ValidFunc(fn) {
		info.plugin, info.fn = file, fn
	}
	// Limits are policy: where they are known they apply before any work.
	st := s.existing(file)
	if st != nil {
		if err := st.admit(r, w, file); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	h, err := s.Plugins.Handler(r.Context(), file, fn, r.Method)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if info := infoFrom(r.Context()); info != nil {
		info.resolved = true
	}
	if st == nil {
		st = s.state(file)
		if err := st.admit(r, w, file); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	switch h.ABI {
	case loader.ABILegacy:
		ctx := r.Context()
		if st.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, st.Timeout)
			defer cancel()
		}
		body, status, err := h.Call(ctx, vars, r.URL.Query())
		if err == nil && (status < 200 || status > 599) {
			err = &invalidStatusError{plugin: file, symbol: h.Symbol, status: status}
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		ct := "text/plain; charset=utf-8"
		if json.Valid([]byte(body)) {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		io.WriteString(w, body)
	case loader.ABIStandard:
		release, err := st.acquire(file)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		r = st.withEnv(r, file, vars)
		rec, ok := w.(*recorder)
		if !ok {
			rec = &recorder{ResponseWriter: w}
		}
		if st.Timeout > 0 {
			err = serveWithTimeout(rec, r, st.Timeout, h.ServeHTTP, release)
		} else {
			err = func() error { defer release(); return h.ServeHTTP(rec, r) }()
		}
		if err != nil {
			if rec.started() {
				// The status is out; all that is left is the log.
				s.logError(r, err, http.StatusInternalServerError)
				return
			}
			s.writeError(w, r, err)
		}
	}
}
