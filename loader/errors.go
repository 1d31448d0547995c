package loader

import "github.com/plugind/plugind/plugerr"

// Error is the error the loader returns, an alias of plugerr.Error so
// that the build pipeline (package build) and the runtime share it.
type Error = plugerr.Error

// The kinds of Error, re-exported from plugerr (see there); test with
// errors.Is.
var (
	ErrBadName          = plugerr.ErrBadName
	ErrNotFound         = plugerr.ErrNotFound
	ErrNoHandler        = plugerr.ErrNoHandler
	ErrMethodNotAllowed = plugerr.ErrMethodNotAllowed
	ErrBuild            = plugerr.ErrBuild
	ErrOpen             = plugerr.ErrOpen
	ErrSignature        = plugerr.ErrSignature
	ErrStatus           = plugerr.ErrStatus
	ErrPanic            = plugerr.ErrPanic
	ErrIncompatible     = plugerr.ErrIncompatible
	ErrInit             = plugerr.ErrInit
	ErrBuilding         = plugerr.ErrBuilding
	ErrBusy             = plugerr.ErrBusy
	ErrTimeout          = plugerr.ErrTimeout
	ErrOverBudget       = plugerr.ErrOverBudget
	ErrUnsupported      = plugerr.ErrUnsupported
	ErrNotBuilt         = plugerr.ErrNotBuilt
	ErrDependency       = plugerr.ErrDependency
	ErrCrashed          = plugerr.ErrCrashed
	ErrRestarting       = plugerr.ErrRestarting
	ErrClosed           = plugerr.ErrClosed
)

func newError(kind error, plugin string, cause error, format string, args ...any) *Error {
	return plugerr.New(kind, plugin, cause, format, args...)
}

// pluginError is newError for a failure whose explanation the plugin
// wrote: detail goes to Detail and, as the cause, to the log, never to
// Msg.
func pluginError(kind error, plugin, detail string, cause error, format string, args ...any) *Error {
	return plugerr.FromPlugin(kind, plugin, detail, cause, format, args...)
}
