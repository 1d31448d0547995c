package loader

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
)

// ABI is the calling convention of a handler symbol.
type ABI string

const (
	// ABILegacy is prestd's: func() string or func() (string, int), the
	// request passed through the HTTPVars and URLQuery globals.
	ABILegacy ABI = "legacy"
	// ABIStandard is func(http.ResponseWriter, *http.Request).
	ABIStandard ABI = "standard"
)

// acceptedSignatures is named in ErrSignature messages.
const acceptedSignatures = "func() string, func() (string, int) or func(http.ResponseWriter, *http.Request)"

// Handler is one exported handler of a loaded plugin.
type Handler struct {
	Plugin string
	Symbol string
	ABI    ABI

	legacy   func() (string, int)
	standard func(http.ResponseWriter, *http.Request)
	art      *artifact
}

// artifact is one opened .so. Plugins with equal sources share it, and
// with it the globals, so the legacy lock lives here.
type artifact struct {
	path string
	syms symbolTable

	// mu serialises legacy calls: they communicate through httpVars and
	// urlQuery, which point into the plugin's package globals.
	mu       sync.Mutex
	httpVars *map[string]string   // nil if the plugin has no HTTPVars
	urlQuery *map[string][]string // nil if the plugin has no URLQuery

	bytes int64 // size of the artifact: memory never given back

	handlers sync.Map // symbol name -> *Handler; only symbols that exist
}

// openArtifact opens path and checks its optional globals' types.
func openArtifact(name, path string) (*artifact, error) {
	syms, err := openPlugin(path)
	if err != nil {
		return nil, newError(ErrOpen, name, err, "plugin %q could not be loaded", name)
	}
	a := &artifact{path: path, syms: syms}
	if sym, err := syms.Lookup("HTTPVars"); err == nil {
		v, ok := sym.(*map[string]string)
		if !ok {
			return nil, newError(ErrSignature, name, nil, "plugin %q: HTTPVars has type %s; want map[string]string", name, derefType(sym))
		}
		a.httpVars = v
	}
	if sym, err := syms.Lookup("URLQuery"); err == nil {
		v, ok := sym.(*map[string][]string)
		if !ok {
			return nil, newError(ErrSignature, name, nil, "plugin %q: URLQuery has type %s; want map[string][]string", name, derefType(sym))
		}
		a.urlQuery = v
	}
	return a, nil
}

// errNoSymbol marks a symbol the plugin does not export.
var errNoSymbol = errors.New("no such symbol")

// handler returns the handler for symbol, looked up once and cached.
func (a *artifact) handler(plugin, symbol string) (*Handler, error) {
	if h, ok := a.handlers.Load(symbol); ok {
		return h.(*Handler), nil
	}
	sym, err := a.syms.Lookup(symbol)
	if err != nil {
		return nil, errNoSymbol
	}
	h := &Handler{Plugin: plugin, Symbol: symbol, art: a}
	switch f := sym.(type) {
	case func() string:
		h.ABI, h.legacy = ABILegacy, func() (string, int) { return f(), http.StatusOK }
	case func() (string, int):
		h.ABI, h.legacy = ABILegacy, f
	case func(http.ResponseWriter, *http.Request):
		h.ABI, h.standard = ABIStandard, f
	default:
		return nil, newError(ErrSignature, plugin, nil, "plugin %q: %s has type %T; want %s", plugin, symbol, sym, acceptedSignatures)
	}
	actual, _ := a.handlers.LoadOrStore(symbol, h)
	return actual.(*Handler), nil
}

// derefType names the type a looked-up variable points to.
func derefType(sym any) string {
	return fmt.Sprintf("%T", sym)[1:]
}

// Call runs a legacy handler with the request's route variables and query
// and returns its body and status. Calls into one artifact are serialised;
// the lock is released and the globals cleared even if the handler panics,
// in which case the error is ErrPanic. A status of 0 means 200.
func (h *Handler) Call(vars map[string]string, query map[string][]string) (body string, status int, err error) {
	a := h.art
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() {
		if a.httpVars != nil {
			*a.httpVars = nil
		}
		if a.urlQuery != nil {
			*a.urlQuery = nil
		}
		if v := recover(); v != nil {
			err = h.panicError(v)
		}
	}()
	if a.httpVars != nil {
		*a.httpVars = vars
	}
	if a.urlQuery != nil {
		*a.urlQuery = query
	}
	body, status = h.legacy()
	if status == 0 {
		status = http.StatusOK
	}
	return body, status, nil
}

// ServeHTTP runs a standard handler. A panic is recovered and returned as
// ErrPanic, except http.ErrAbortHandler, which net/http handles itself.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			err = h.panicError(v)
		}
	}()
	h.standard(w, r)
	return nil
}

func (h *Handler) panicError(v any) error {
	e := newError(ErrPanic, h.Plugin, fmt.Errorf("panic: %v", v), "plugin %q: %s panicked", h.Plugin, h.Symbol)
	e.Stack = debug.Stack()
	return e
}
