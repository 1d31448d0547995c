package handlers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"

	"github.com/plugind/plugind/loader"
)

// Plugins resolves a request to a plugin handler, loading the plugin if
// needed. *loader.Loader implements it.
type Plugins interface {
	Handler(ctx context.Context, name, fn, method string) (*loader.Handler, error)
}

var _ Plugins = (*loader.Loader)(nil)

// Server serves plugins over HTTP.
type Server struct {
	Plugins Plugins
	Log     zerolog.Logger
	// Debug adds the compiler's diagnostics to build-failure bodies.
	Debug bool
	// Ready reports why the server cannot take traffic yet (or any more);
	// nil means ready. A nil Ready is always ready.
	Ready func() error
}

// Handler returns the server's root handler: router and access log.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not found"})
	})
	r.HandleFunc("/healthz", s.healthz)
	r.HandleFunc("/readyz", s.readyz)
	r.HandleFunc("/_PLUGIN/{file}/{func}", s.plugin)
	r.PathPrefix("/_PLUGIN").HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "plugin paths are /_PLUGIN/{file}/{func}, with names of letters, digits, '_' and '-'"})
	})

	var h http.Handler = r
	h = hlog.AccessHandler(accessLog)(h)
	h = hlog.RequestIDHandler("request_id", "X-Request-Id")(h)
	h = hlog.NewHandler(s.Log)(h)
	return h
}

func accessLog(r *http.Request, status, size int, d time.Duration) {
	hlog.FromRequest(r).Info().
		Str("method", r.Method).
		Str("path", r.URL.Path).
		Int("status", status).
		Int("size", size).
		Dur("duration", d).
		Msg("request")
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.Ready != nil {
		if err := s.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// plugin serves /_PLUGIN/{file}/{func}.
func (s *Server) plugin(w http.ResponseWriter, r *http.Request) {
	vars := mux.Vars(r)
	file, fn := vars["file"], vars["func"]
	if loader.ValidName(file) && loader.ValidFunc(fn) {
		hlog.FromRequest(r).UpdateContext(func(c zerolog.Context) zerolog.Context {
			return c.Str("plugin", file).Str("func", fn)
		})
	}
	h, err := s.Plugins.Handler(r.Context(), file, fn, r.Method)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch h.ABI {
	case loader.ABILegacy:
		body, status, err := h.Call(map[string]string{"file": file, "func": fn}, r.URL.Query())
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
		sw := &startedWriter{ResponseWriter: w}
		if err := h.ServeHTTP(sw, r); err != nil {
			if sw.started {
				// The status is out; all that is left is the log.
				logError(r, err, http.StatusInternalServerError)
				return
			}
			s.writeError(w, r, err)
		}
	}
}

// startedWriter records whether a standard handler began its response,
// so that a later panic is answered with a JSON error only if it can be.
type startedWriter struct {
	http.ResponseWriter
	started bool
}

func (w *startedWriter) WriteHeader(code int) {
	w.started = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *startedWriter) Write(b []byte) (int, error) {
	w.started = true
	return w.ResponseWriter.Write(b)
}

func (w *startedWriter) Flush() {
	w.started = true
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *startedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
