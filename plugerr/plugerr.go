// Package plugerr holds the error plugind's plugin packages return: one
// type, Error, whose Kind is one of the sentinels here. The build
// pipeline (package build) and the runtime (package loader) both return
// it, and the HTTP layer maps its kinds to statuses; package loader
// re-exports every name, so callers may use either.
package plugerr

import (
	"errors"
	"fmt"
	"time"
)

// Sentinels classify every error the plugin packages return; test with
// errors.Is.
var (
	ErrBadName          = errors.New("invalid name")
	ErrNotFound         = errors.New("plugin not found")
	ErrNoHandler        = errors.New("handler not found")
	ErrMethodNotAllowed = errors.New("method not allowed")
	ErrBuild            = errors.New("plugin build failed")
	ErrOpen             = errors.New("plugin could not be loaded")
	ErrSignature        = errors.New("unsupported handler signature")
	ErrStatus           = errors.New("invalid status")
	ErrPanic            = errors.New("plugin panicked")
	ErrIncompatible     = errors.New("plugin built for a different server")
	ErrInit             = errors.New("plugin failed to initialise")
	ErrBuilding         = errors.New("plugin is still being built")
	ErrBusy             = errors.New("plugin is busy")
	ErrTimeout          = errors.New("plugin did not answer in time")
	ErrOverBudget       = errors.New("plugin memory budget exceeded")
	ErrUnsupported      = errors.New("plugins are not supported on this platform")
	// ErrNotBuilt is a plugin a prebuilt-mode server has no artifact for
	// (503: plugind build makes one).
	ErrNotBuilt = errors.New("plugin is not built")
	// ErrDependency is a plugin whose module requirements cannot be
	// met in this server: a version newer than one the server links, a
	// version other than one another plugin loaded (Go allows one
	// version of a package per process), a go.sum without a checksum
	// the plugin's go.mod needs, an import no module provides.
	ErrDependency = errors.New("plugin dependency problem")
	// ErrCrashed is an isolated plugin's process dying under a call (502);
	// ErrRestarting a call while it restarts, or stays down after a crash
	// loop (503 with Retry-After).
	ErrCrashed    = errors.New("plugin process crashed")
	ErrRestarting = errors.New("plugin process is restarting")
	// ErrClosed: the Loader was closed (the server is shutting down); it
	// loads and initialises nothing more.
	ErrClosed = errors.New("plugin loader is closed")
)

// Error is the plugin packages' error. Msg is safe to show a client: it names
// plugins and symbols, never paths, and holds no text a plugin wrote.
// Detail holds what the plugin wrote, for operators. Err carries the
// cause for the log.
type Error struct {
	Kind   error  // one of the sentinels above
	Plugin string // plugin name, if known
	Msg    string // client-safe message
	Err    error  // cause; may contain paths, for logs only

	// Detail is text the plugin itself wrote, as it wrote it: the error
	// its Init (or bus registration) returned, the value a handler or
	// hook panicked with, the panic value or first output line of its
	// init functions in the load check. "" when the plugin wrote none.
	// A plugin may put anything there, a secret from its settings
	// included, so it is for operators (and debug mode) only, never a
	// client's response. It carries no server paths. Error() includes
	// it (through Err), for logs.
	Detail string

	// Allowed lists the methods a plugin has for the requested function
	// (ErrMethodNotAllowed).
	Allowed []string
	// Output is the compiler's output with paths made relative to the
	// plugin source directory (ErrBuild).
	Output string
	// Stack is the goroutine stack at a panic (ErrPanic).
	Stack []byte
	// RetryAfter estimates when to try again (ErrBuilding); 0: unknown.
	RetryAfter time.Duration
	// Site is where a panic happened, as file.go:line of the plugin's
	// source (ErrPanic), when the stack shows it.
	Site string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

// New returns an Error of kind for plugin, with cause and a client-safe
// message.
func New(kind error, plugin string, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Plugin: plugin, Err: cause, Msg: fmt.Sprintf(format, args...)}
}

// FromPlugin is New for a failure whose explanation the plugin wrote:
// detail goes to Detail and, as the cause, to the log, never to Msg.
func FromPlugin(kind error, plugin, detail string, cause error, format string, args ...any) *Error {
	if cause == nil {
		cause = errors.New(detail)
	}
	e := New(kind, plugin, cause, format, args...)
	e.Detail = detail
	return e
}
