package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/loader"
)

// errorBody is every error response.
type errorBody struct {
	Error  string `json:"error"`
	Plugin string `json:"plugin,omitempty"`
	// RequestID finds the log line of a server error, which has what the
	// body leaves out.
	RequestID string `json:"request_id,omitempty"`
	// Detail is plugin-written text (a panic's value, an Init error) and
	// Site where a panic happened (file.go:line): for operators and in
	// debug mode only.
	Detail string `json:"detail,omitempty"`
	Site   string `json:"site,omitempty"`
	// Diagnostics is the compiler's output, for operators and in debug
	// mode; Hint says where else to find it.
	Diagnostics string `json:"diagnostics,omitempty"`
	Hint        string `json:"hint,omitempty"`
}

// statuses maps error kinds to HTTP statuses, first match wins.
var statuses = []struct {
	kind   error
	status int
}{
	{auth.ErrUnauthorized, http.StatusUnauthorized},
	{auth.ErrForbidden, http.StatusForbidden},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge},
	{errTaskNotFound, http.StatusNotFound},
	{errTaskFinished, http.StatusConflict},
	{errNoProfile, http.StatusNotFound},
	{errProfiling, http.StatusConflict},
	{errProfileTime, http.StatusBadRequest},
	{loader.ErrBadName, http.StatusBadRequest},
	{loader.ErrNotFound, http.StatusNotFound},
	{loader.ErrNoHandler, http.StatusNotFound},
	{loader.ErrMethodNotAllowed, http.StatusMethodNotAllowed},
	{loader.ErrUnsupported, http.StatusNotImplemented},
	{loader.ErrBuilding, http.StatusServiceUnavailable},
	{loader.ErrNotBuilt, http.StatusServiceUnavailable},
	{loader.ErrClosed, http.StatusServiceUnavailable},
	{loader.ErrBusy, http.StatusServiceUnavailable},
	{loader.ErrRestarting, http.StatusServiceUnavailable},
	{loader.ErrCrashed, http.StatusBadGateway},
	{context.Canceled, statusClientClosed}, // before the timeouts: the client left first
	{loader.ErrTimeout, http.StatusGatewayTimeout},
	{errTimeout, http.StatusGatewayTimeout},
	{errTooMany, http.StatusTooManyRequests},
	{errTooLarge, http.StatusRequestEntityTooLarge},
	{errMethod, http.StatusMethodNotAllowed},
	{errBufferFull, http.StatusInternalServerError},
	{loader.ErrBuild, http.StatusInternalServerError},
	{loader.ErrOpen, http.StatusInternalServerError},
	{loader.ErrSignature, http.StatusInternalServerError},
	{loader.ErrStatus, http.StatusInternalServerError},
	{loader.ErrPanic, http.StatusInternalServerError},
	{loader.ErrIncompatible, http.StatusInternalServerError},
	{loader.ErrDependency, http.StatusInternalServerError},
	{loader.ErrInit, http.StatusInternalServerError},
	{loader.ErrOverBudget, http.StatusInternalServerError},
	{context.DeadlineExceeded, http.StatusServiceUnavailable},
}

// statusClientClosed is nginx's status for a request whose client left
// before the answer: nobody reads it, but the access log shows why.
const statusClientClosed = 499

// statusOf is the status for err.
func statusOf(err error) int {
	for _, s := range statuses {
		if errors.Is(err, s.kind) {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

// writeError is the one place errors become responses. The body carries
// client-safe text: loader messages name plugins and symbols, never paths,
// and anything unclassified is "Internal Server Error". What a plugin wrote
// (panic values, Init errors) and the compiler's output are added for
// operators and in debug mode. The full error goes to the log, and a
// server error's body carries the request id that finds it there.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	body := errorBody{Error: http.StatusText(status)}
	operator := s.operator(r)
	var le *loader.Error
	var lim *limitError
	switch {
	case errors.As(err, &le):
		body.Error, body.Plugin = le.Msg, le.Plugin
		if operator {
			body.Detail, body.Site, body.Diagnostics = le.Detail, le.Site, le.Output
		} else if errors.Is(err, loader.ErrBuild) {
			body.Hint = fmt.Sprintf("the compiler's diagnostics are in the server log, on the admin page (/_ADMIN/), and printed by `plugind build %s`", le.Plugin)
		}
		if len(le.Allowed) > 0 {
			w.Header().Set("Allow", strings.Join(le.Allowed, ", "))
		}
		switch {
		case le.RetryAfter > 0:
			w.Header().Set("Retry-After", strconv.Itoa(int((le.RetryAfter+time.Second-1)/time.Second)))
		case errors.Is(err, loader.ErrBuilding) || errors.Is(err, loader.ErrBusy) || errors.Is(err, loader.ErrRestarting):
			w.Header().Set("Retry-After", "1")
		}
	case errors.As(err, &lim):
		body.Error, body.Plugin = lim.msg, lim.plugin
		if len(lim.allow) > 0 {
			w.Header().Set("Allow", strings.Join(lim.allow, ", "))
		}
		if errors.Is(err, errTooMany) {
			w.Header().Set("Retry-After", "1")
		}
	case errors.Is(err, context.Canceled):
		body.Error = "the request was cancelled"
	case errors.Is(err, errTimeout):
		body.Error = "the plugin did not answer in time"
		if info := infoFrom(r.Context()); info != nil && info.named {
			body.Plugin = info.file
		}
	case errors.Is(err, errBufferFull):
		body.Error = err.Error() // names the limit and the key, no path
	case errors.Is(err, auth.ErrUnauthorized), errors.Is(err, auth.ErrForbidden), errors.Is(err, errBodyTooLarge),
		errors.Is(err, errTaskNotFound), errors.Is(err, errTaskFinished),
		errors.Is(err, errNoProfile), errors.Is(err, errProfiling), errors.Is(err, errProfileTime):
		body.Error = err.Error() // names no credential, no path
	case errors.Is(err, context.DeadlineExceeded):
		body.Error = "the plugin is not ready yet; try again"
		w.Header().Set("Retry-After", "1")
	}
	if status >= 500 {
		if info := infoFrom(r.Context()); info != nil {
			body.RequestID = info.id
		}
	}
	s.logError(r, err, status)
	writeJSON(w, status, body)
}

// logError logs err at a level that fits status: server errors at error,
// the 503s a busy or building plugin is expected to give at warning, the
// client's mistakes (and clients that left) at debug. A panic's stack and
// site go with it (a failed build's output is logged once, by the
// build).
func (s *Server) logError(r *http.Request, err error, status int) {
	log := s.requestLogger(r)
	var ev *zerolog.Event
	switch {
	case status == http.StatusServiceUnavailable:
		ev = log.Warn()
	case status >= 500:
		ev = log.Error()
	default:
		ev = log.Debug()
	}
	var le *loader.Error
	if errors.As(err, &le) {
		if len(le.Stack) > 0 {
			ev = ev.Str("stack", string(le.Stack))
		}
		if le.Site != "" {
			ev = ev.Str("site", le.Site)
		}
	}
	ev.Err(err).Int("status", status).Msg("request failed")
}

// writeJSON writes v as the JSON body of a response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
