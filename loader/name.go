package loader

import "github.com/plugind/plugind/build"

// Names arrive from URLs. They are checked byte by byte against a strict
// ASCII alphabet before anything touches the disk, so no encoding, dot,
// separator, NUL or look-alike rune can reach a path.

// MaxNameLen bounds plugin and function names.
const MaxNameLen = build.MaxNameLen

// MaxMethodLen bounds HTTP methods used to form a symbol name.
const MaxMethodLen = 16

// ValidName reports whether s can name a plugin: see build.ValidName.
func ValidName(s string) bool { return build.ValidName(s) }

// Ignored reports whether a valid plugin name never names a plugin: see
// build.Ignored.
func Ignored(name string) bool { return build.Ignored(name) }

// ValidFunc reports whether s can name a handler function: 1 to
// MaxNameLen letters, digits or '_'.
func ValidFunc(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isIdentByte(s[i]) {
			return false
		}
	}
	return true
}

// ValidMethod reports whether s can be the method part of a symbol name:
// upper-case ASCII letters only.
func ValidMethod(s string) bool {
	if len(s) == 0 || len(s) > MaxMethodLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// CheckCall checks the names of a call to handler method+fn+"Handler"
// of plugin name, as they come from a URL, before anything touches the
// disk: nil, or the error the caller answers (ErrBadName for the plugin
// or function name, ErrMethodNotAllowed for the method). The loader and
// isolated plugins (package isolate) answer alike.
func CheckCall(name, fn, method string) error {
	if err := CheckNames(name, fn); err != nil {
		return err
	}
	if !ValidMethod(method) {
		return newError(ErrMethodNotAllowed, name, nil, "method not allowed")
	}
	return nil
}

// CheckNames checks the names of a call, as CheckCall does, and not its
// method: a resolver that answers a method no handler can be named after
// as one the plugin has no handler for (NoHandlerError: 404, or 405 with
// the methods it has) checks it itself, after finding the plugin.
func CheckNames(name, fn string) error {
	switch {
	case !ValidName(name):
		return newError(ErrBadName, "", nil, "invalid plugin name: use 1 to %d letters, digits, '_' or '-'", MaxNameLen)
	case !ValidFunc(fn):
		return newError(ErrBadName, name, nil, "invalid function name: use 1 to %d letters, digits or '_'", MaxNameLen)
	}
	return nil
}

func isIdentByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}
