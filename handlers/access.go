package handlers

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/rs/xid"
	"github.com/rs/zerolog"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/sdk"
)

// The access middleware is written out rather than assembled from hlog's
// handlers: those copy the request three times and the logger once per
// request. Here a request costs two allocations: the request's copy with
// its new context, and the requestInfo that is that context, the
// recorder and the request id's header value in one (and a generated
// id's text).

// requestInfo is what the server learns about a request as it passes
// through: parsed once by the access layer, completed by the router, the
// guard and the plugin handler, read by the access log.
//
// It is also the request's context from the access layer in: the parent
// context with one value, itself under requestInfoKey, as
// context.WithValue would make it, without a context of its own to
// allocate. Cancellation, deadlines and other values are the parent's.
type requestInfo struct {
	context.Context

	id string
	// idHeader holds id as the X-Request-Id header's value.
	idHeader [1]string
	// file and fn are /_PLUGIN/{file}/{func}'s segments when pluginRoute;
	// named says they are valid names, fit for logs and labels.
	file, fn    string
	pluginRoute bool
	named       bool
	resolved    bool // the request reached an existing handler
	principal   auth.Principal

	status int // the final status written; 0: none yet
	size   int // body bytes written, before compression
	// rec is the response writer the access layer hands on: it records
	// status and size above (recorder.go).
	rec recorder
	// bodyTooLarge: a read of the body went over a limit. Atomic: a
	// handler under a timeout may read on after its caller has answered.
	bodyTooLarge atomic.Bool

	// env is the sdk's view of the plugin and the request, which Value
	// answers for sdk.EnvKey once hasEnv is set. The plugin handler
	// writes env, then sets hasEnv, before it calls the plugin
	// (pluginState.withEnv); nothing changes them after. Atomic: a
	// middleware plugin's goroutine may ask for the env meanwhile.
	env    sdk.Env
	hasEnv atomic.Bool
}

// started reports whether the response has begun: after that, a failure
// can only abort the connection.
func (i *requestInfo) started() bool { return i.status != 0 }

type requestInfoKey struct{}

// Value returns i for requestInfoKey, the plugin's sdk.Env for
// sdk.EnvKey once set, and the parent's values for other keys.
func (i *requestInfo) Value(key any) any {
	switch key.(type) {
	case requestInfoKey:
		return i
	case sdk.EnvKey:
		if i.hasEnv.Load() {
			return &i.env
		}
	}
	return i.Context.Value(key)
}

// infoFrom returns the request's info, nil outside the access layer.
func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

// requestLogger is the logger for events of one request: every line
// carries the request id, and the plugin and function once known.
func (s *Server) requestLogger(r *http.Request) *zerolog.Logger {
	c := s.Log.With()
	if info := infoFrom(r.Context()); info != nil {
		c = c.Str("request_id", info.id)
		if info.named {
			c = c.Str("plugin", info.file).Str("func", info.fn)
		}
	}
	l := c.Logger()
	return &l
}

// validRequestID accepts a client's X-Request-Id only if it is short and
// plain, so that it cannot forge log structure or bloat lines.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !isIDByte(c) {
			return false
		}
	}
	return true
}

func isIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// access assigns the request id (X-Request-Id, honoured or generated, and
// returned), parses a plugin path once, and logs one "request" event when
// the response is done, aborted ones included. Status and size are
// recorded by info.rec, which keeps the writer's optional interfaces: an
// informational 1xx is not the final status.
func (s *Server) access(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if s.Metrics != nil {
			s.Metrics.Started()
			defer s.Metrics.Done()
		}
		info := &requestInfo{Context: r.Context()}
		s.requestID(w.Header(), r, info, start)
		info.file, info.fn, info.pluginRoute = splitPluginPath(r.URL.Path)
		info.named = info.pluginRoute && loader.ValidName(info.file) && loader.ValidFunc(info.fn)
		defer s.logRequest(r, info, start)
		next.ServeHTTP(info.rec.wrap(w, info), r.WithContext(info))
	})
}

// requestID sets info's id to r's, the client's if valid, else a new one
// made at now (the request's start: a clock read less), and returns it in
// the response header h. The header's value is info.idHeader, not a
// slice of its own: it has length and capacity 1, so a handler's Add
// makes a new slice rather than writing into info.
func (s *Server) requestID(h http.Header, r *http.Request, info *requestInfo, now time.Time) {
	var id string
	if v := r.Header["X-Request-Id"]; len(v) > 0 { // the canonical key: Get would canonicalise it per request
		id = v[0]
	}
	if !validRequestID(id) {
		id = xid.NewWithTime(now).String()
	}
	info.id, info.idHeader[0] = id, id
	h["X-Request-Id"] = info.idHeader[:]
}

// logRequest writes the access log line and the request metrics.
func (s *Server) logRequest(r *http.Request, info *requestInfo, start time.Time) {
	aborted := recover()
	status := info.status
	if status == 0 {
		status = http.StatusOK
	}
	took := time.Since(start)
	var client [64]byte // an address's text, without a string per request
	ev := s.Log.Info()
	if aborted != nil {
		ev = s.Log.Warn().Bool("aborted", true)
	}
	ev = ev.Str("request_id", info.id)
	if info.named {
		ev = ev.Str("plugin", info.file).Str("func", info.fn)
	}
	ev.Str("method", r.Method).
		Str("path", r.URL.Path).
		Bytes("client", ClientIP(r, s.TrustedProxies).AppendTo(client[:0])).
		Int("status", status).
		Int("size", info.size).
		Dur("duration", took).
		Msg("request")
	if s.Metrics != nil {
		plugin, fn := "", ""
		if info.resolved {
			plugin, fn = info.file, info.fn
		}
		s.Metrics.Request(plugin, fn, r.Method, status, took)
	}
	// A plugin that exists: resolved, or failing (a build error) rather
	// than a name nobody serves.
	if s.RequestStats != nil && info.named && (info.resolved || status >= 500) {
		s.RequestStats.RecordAt(info.file, status, took, start.Add(took))
	}
	if aborted != nil {
		panic(aborted) // net/http aborts the connection
	}
}
