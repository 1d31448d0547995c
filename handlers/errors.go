package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/loader"
)

// errorBody is every error response.
type errorBody struct {
	Error  string `json:"error"`
	Plugin string `json:"plugin,omitempty"`
	// Diagnostics is the compiler's output, in debug mode only.
	Diagnostics string `json:"diagnostics,omitempty"`
}

// statuses maps error kinds to HTTP statuses, first match wins.
var statuses = []struct {
	kind   error
	status int
}{
	{auth.ErrUnauthorized, http.StatusUnauthorized},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge},
	{errTaskNotFound, http.StatusNotFound},
	{errTaskFinished, http.StatusConflict},
	{loader.ErrBadName, http.StatusBadRequest},
	{loader.ErrNotFound, http.StatusNotFound},
	{loader.ErrNoHandler, http.StatusNotFound},
	{loader.ErrMethodNotAllowed, http.StatusMethodNotAllowed},
	{loader.ErrUnsupported, http.StatusNotImplemented},
	{loader.ErrBuilding, http.StatusServiceUnavailable},
	{loader.ErrBusy, http.StatusServiceUnavailable},
	{loader.ErrTimeout, http.StatusGatewayTimeout},
	{errTimeout, http.StatusGatewayTimeout},
	{errTooMany, http.StatusTooManyRequests},
	{errTooLarge, http.StatusRequestEntityTooLarge},
	{errMethod, http.StatusMethodNotAllowed},
	{loader.ErrBuild, http.StatusInternalServerError},
	{loader.ErrOpen, http.StatusInternalServerError},
	{loader.ErrSignature, http.StatusInternalServerError},
	{loader.ErrPanic, http.StatusInternalServerError},
	{loader.ErrIncompatible, http.StatusInternalServerError},
	{loader.ErrInit, http.StatusInternalServerError},
	{loader.ErrOverBudget, http.StatusInternalServerError},
	{errInvalidStatus, http.StatusInternalServerError},
	{context.DeadlineExceeded, http.StatusServiceUnavailable},
	{context.Canceled, statusClientClosed},
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
// only client-safe text: loader messages name plugins and symbols, never
// paths; anything unclassified is "internal server error". The full error
// goes to the log.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	body := errorBody{Error: http.StatusText(status)}
	var le *loader.Error
	var se *invalidStatusError
	var lim *limitError
	switch {
	case errors.As(err, &le):
		body.Error, body.Plugin = le.Msg, le.Plugin
		if s.Debug {
			body.Diagnostics = le.Output
		}
		if len(le.Allowed) > 0 {
			w.Header().Set("Allow", strings.Join(le.Allowed, ", "))
		}
		if errors.Is(err, loader.ErrBuilding) || errors.Is(err, loader.ErrBusy) {
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
	case errors.Is(err, errTimeout):
		body.Error = "the plugin did not answer in time"
	case errors.As(err, &se):
		body.Error, body.Plugin = se.Error(), se.plugin
	case errors.Is(err, auth.ErrUnauthorized), errors.Is(err, errBodyTooLarge),
		errors.Is(err, errTaskNotFound), errors.Is(err, errTaskFinished):
		body.Error = err.Error() // names no credential, no path
	case errors.Is(err, context.Canceled):
		body.Error = "the request was cancelled"
	case errors.Is(err, context.DeadlineExceeded):
		body.Error = "the plugin is not ready yet; try again"
		w.Header().Set("Retry-After", "1")
	}
	s.logError(r, err, status)
	writeJSON(w, status, body)
}

// logError logs err at a level that fits status, with the stack of a
// panic and the compiler's output of a failed build.
func (s *Server) logError(r *http.Request, err error, status int) {
	log := s.requestLogger(r)
	var ev *zerolog.Event
	if status >= 500 {
		ev = log.Error()
	} else {
		ev = log.Debug() // the client's mistake, or the client left
	}
	var le *loader.Error
	if errors.As(err, &le) && len(le.Stack) > 0 {
		ev = ev.Str("stack", string(le.Stack))
	}
	ev.Err(err).Int("status", status).Msg("request failed")
}

// errInvalidStatus classifies invalidStatusError.
var errInvalidStatus = errors.New("invalid status")

// invalidStatusError is a legacy handler returning a status that is not
// a final HTTP status.
type invalidStatusError struct {
	plugin, symbol string
	status         int
}

func (e *invalidStatusError) Error() string {
	return fmt.Sprintf("plugin %q: %s returned status %d; want 200-599 (or 0 for 200)", e.plugin, e.symbol, e.status)
}

func (e *invalidStatusError) Unwrap() error { return errInvalidStatus }

// writeJSON writes v as the JSON body of a response.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
