package handlers

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/rs/xid"
	"github.com/rs/zerolog"
)

// The access middleware is written out rather than assembled from hlog's
// handlers: those copy the request three times and the logger once per
// request, which measurably lowers throughput on the plugin path. Here a
// request costs one context value and one writer wrapper.

// requestInfo is what the access log knows of a request. The plugin
// handler fills in plugin and fn once the names are valid.
type requestInfo struct {
	id         string
	plugin, fn string
	resolved   bool // the request reached an existing handler
}

type requestInfoKey struct{}

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
		if info.plugin != "" {
			c = c.Str("plugin", info.plugin).Str("func", info.fn)
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
// returned), and logs one "request" event when the response is done.
func (s *Server) access(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if s.Metrics != nil {
			defer s.Metrics.InFlight()()
		}
		info := &requestInfo{id: r.Header.Get("X-Request-Id")}
		if !validRequestID(info.id) {
			info.id = xid.New().String()
		}
		w.Header().Set("X-Request-Id", info.id)
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)))

		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		ev := s.Log.Info().Str("request_id", info.id)
		if info.plugin != "" {
			ev = ev.Str("plugin", info.plugin).Str("func", info.fn)
		}
		took := time.Since(start)
		ev.Str("method", r.Method).
			Str("path", r.URL.Path).
			Int("status", status).
			Int("size", rec.size).
			Dur("duration", took).
			Msg("request")
		if s.Metrics != nil {
			plugin, fn := "", ""
			if info.resolved {
				plugin, fn = info.plugin, info.fn
			}
			s.Metrics.Request(plugin, fn, r.Method, status, took)
		}
		// A plugin that exists: resolved, or failing (a build error) rather
		// than a name nobody serves.
		if s.RequestStats != nil && info.plugin != "" && (info.resolved || status >= 500) {
			s.RequestStats.RecordAt(info.plugin, status, took, start.Add(took))
		}
	})
}

// recorder notes the status and size of a response, and whether it has
// begun, so that a failure after that point is logged rather than
// answered. Flush and Hijack pass through; Unwrap serves
// http.ResponseController.
type recorder struct {
	http.ResponseWriter
	status int
	size   int
}

func (w *recorder) started() bool { return w.status != 0 }

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 || code < 200 && w.status < 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.size += n
	return n, err
}

func (w *recorder) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the response writer cannot hijack its connection")
	}
	w.status = http.StatusSwitchingProtocols
	return h.Hijack()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
