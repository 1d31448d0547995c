package loader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plugind/plugind/build"
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
	Fn     string // the route's function name: Symbol is Method+Fn+"Handler"
	Symbol string
	ABI    ABI

	legacy   func() (string, int)
	standard func(http.ResponseWriter, *http.Request)
	// copies are the legacy function of each copy of the plugin
	// (copies[0] is legacy), parallel to art.copies; nil without copies.
	copies []func() (string, int)
	art    *artifact
	wait   time.Duration // bound on waiting for a busy legacy plugin
}

// hooks are a plugin's optional lifecycle functions.
type hooks struct {
	init   func(context.Context, map[string]any) error
	close  func(context.Context) error
	health func(context.Context) error
}

// artifact is one opened .so. Plugins with equal sources share it, and
// with it the globals, so the legacy lock lives here.
//
// A plugin loaded with copies ([plugin.NAME] copies = N, see
// Options.Copies) is N artifacts, each built under a package path of its
// own, so each has its own globals. The first, the plugin itself, holds
// them all in copies, and its sem counts free copies: a legacy call
// takes a slot of sem (waiting as one without copies waits for the
// lock), then the first free copy from a rotating start (take). A slot
// guarantees a free copy: at most N calls hold slots, each at most one
// copy.
type artifact struct {
	path  string
	syms  symbolTable
	bytes int64 // size of the artifact: memory never given back
	hooks hooks
	// modules are the modules it carries beyond the server's, path ->
	// version as its build information says (see build.Registry).
	modules map[string]string

	// sem (capacity 1, or the number of copies) serialises legacy calls
	// on a copy: they communicate through httpVars and urlQuery, which
	// point into its globals.
	sem      chan struct{}
	copies   []*artifact          // every copy, copies[0] the artifact itself; nil: one copy
	next     atomic.Uint32        // where take starts looking for a free copy
	busy     atomic.Bool          // this copy runs a legacy call (with copies only)
	httpVars *map[string]string   // nil if the plugin has no HTTPVars
	urlQuery *map[string][]string // nil if the plugin has no URLQuery
	settings *map[string]any      // nil if the plugin has no Settings
	secrets  *map[string]string   // nil if the plugin has no Secrets

	handlers sync.Map // handlerKey -> *Handler; only symbols that exist
}

// otherVersion is the package that plugin.Open refused an artifact for
// with err, having loaded a version of it that differs (Go compares the
// packages' export data): a package of a module, not of the standard
// library, whose mismatches (build flags) the pipeline finds first.
func otherVersion(err error) (pkg string, ok bool) {
	if err == nil {
		return "", false
	}
	_, pkg, ok = strings.Cut(err.Error(), "plugin was built with a different version of package ")
	first, _, _ := strings.Cut(pkg, "/")
	return pkg, ok && strings.Contains(first, ".")
}

// openFailure is what plugin.Open's err says went wrong opening the
// artifact at path, without the path: Go's own reason (a dynamic
// loader's error, "plugin already loaded", a symbol it cannot find),
// named for the operator, with a hint where Go's words need one.
func openFailure(err error, path string) string {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, `plugin.Open("`); ok {
		if _, reason, ok := strings.Cut(rest, `"): `); ok {
			msg = reason
		}
	}
	msg = strings.ReplaceAll(msg, path, filepath.Base(path))
	msg = strings.ReplaceAll(msg, filepath.Dir(path)+string(filepath.Separator), "")
	if strings.HasPrefix(msg, "plugin already loaded") {
		msg += " (another library built from the same source, a copy under another name, is loaded: Go loads a plugin's package once per process)"
	}
	return "plugin.Open: " + msg
}

// openInProcess is openArtifact in the server's own process. The load
// check opens each new artifact in a child first (build.ExecLoadCheck);
// without it (plugins.loadchecktimeout = 0), an init function that
// panics does so here, and must not end the server. Go may not open
// plugins in this process any more after such a panic: that is what the
// load check is for.
func openInProcess(name, path string) (a *artifact, err error) {
	defer func() {
		if v := recover(); v != nil {
			a, err = nil, pluginError(ErrInit, name, fmt.Sprint(v), nil, "plugin %q cannot be loaded: %s", name, build.InitPanicked)
		}
	}()
	return openArtifact(name, path)
}

// openArtifact opens path and checks the types of its optional globals
// and hooks.
func openArtifact(name, path string) (*artifact, error) {
	syms, err := openPlugin(path)
	if pkg, ok := otherVersion(err); ok {
		return nil, newError(ErrOpen, name, err, "plugin %q could not be loaded: it carries another version of package %s than the one this process loaded before (an edit of the package since, or another version of its module); Go loads one version of a package per process: restart the server to load it, or run the plugin in a process of its own (isolation = \"process\")", name, pkg)
	} else if err != nil {
		return nil, newError(ErrOpen, name, err, "plugin %q cannot be loaded: %s", name, openFailure(err, path))
	}
	a := &artifact{path: path, syms: syms, sem: make(chan struct{}, 1)}
	globals := []struct {
		symbol string
		bind   func(sym any) bool
		want   string
	}{
		{"HTTPVars", func(s any) (ok bool) { a.httpVars, ok = s.(*map[string]string); return }, "map[string]string"},
		{"URLQuery", func(s any) (ok bool) { a.urlQuery, ok = s.(*map[string][]string); return }, "map[string][]string"},
		{"Settings", func(s any) (ok bool) { a.settings, ok = s.(*map[string]any); return }, "map[string]any"},
		{"Secrets", func(s any) (ok bool) { a.secrets, ok = s.(*map[string]string); return }, "map[string]string"},
		{"Init", func(s any) bool { return a.bindInit(s) }, "func(context.Context) error or func(context.Context, map[string]any) error"},
		{"Close", func(s any) (ok bool) { a.hooks.close, ok = s.(func(context.Context) error); return }, "func(context.Context) error"},
		{"Health", func(s any) (ok bool) { a.hooks.health, ok = s.(func(context.Context) error); return }, "func(context.Context) error"},
	}
	for _, g := range globals {
		sym, err := syms.Lookup(g.symbol)
		if err != nil {
			continue // optional
		}
		if !g.bind(sym) {
			return nil, newError(ErrSignature, name, nil, "plugin %q: %s has type %s; want %s", name, g.symbol, typeName(sym), g.want)
		}
	}
	return a, nil
}

func (a *artifact) bindInit(sym any) bool {
	switch f := sym.(type) {
	case func(context.Context, map[string]any) error:
		a.hooks.init = f
	case func(context.Context) error:
		a.hooks.init = func(ctx context.Context, _ map[string]any) error { return f(ctx) }
	default:
		return false
	}
	return true
}

// typeName names a symbol's type: a variable's, not its pointer's.
// Lookup returns functions as they are and variables as pointers.
func typeName(sym any) string {
	t := fmt.Sprintf("%T", sym)
	if strings.HasPrefix(t, "*") {
		return t[1:]
	}
	return t
}

// errNoSymbol marks a symbol the plugin does not export.
var errNoSymbol = errors.New("no such symbol")

// handlerKey names a handler symbol: method + fn + "Handler".
type handlerKey struct{ method, fn string }

// handler returns the handler method + fn + "Handler", looked up once
// and cached.
func (a *artifact) handler(plugin, method, fn string, wait time.Duration) (*Handler, error) {
	// Keyed by the symbol's parts: the name itself would be a string
	// made, on the heap, for every request.
	key := handlerKey{method, fn}
	if h, ok := a.handlers.Load(key); ok {
		return h.(*Handler), nil
	}
	symbol := method + fn + "Handler"
	sym, err := a.syms.Lookup(symbol)
	if err != nil {
		return nil, errNoSymbol
	}
	h := &Handler{Plugin: plugin, Fn: fn, Symbol: symbol, art: a, wait: wait}
	if h.legacy = legacyFunc(sym); h.legacy != nil {
		h.ABI = ABILegacy
	} else if f, ok := sym.(func(http.ResponseWriter, *http.Request)); ok {
		h.ABI, h.standard = ABIStandard, f
	} else {
		return nil, newError(ErrSignature, plugin, nil, "plugin %q: %s has type %T; want %s", plugin, symbol, sym, acceptedSignatures)
	}
	if h.ABI == ABILegacy && len(a.copies) > 1 {
		h.copies = make([]func() (string, int), len(a.copies))
		h.copies[0] = h.legacy
		for i, c := range a.copies[1:] {
			csym, err := c.syms.Lookup(symbol)
			if h.copies[i+1] = legacyFunc(csym); err != nil || h.copies[i+1] == nil {
				// Built from the same source: cannot happen unless the
				// cache was tampered with.
				return nil, newError(ErrSignature, plugin, err, "plugin %q: copy %d of the plugin does not export %s as copy 0 does", plugin, i+1, symbol)
			}
		}
	}
	actual, _ := a.handlers.LoadOrStore(key, h)
	return actual.(*Handler), nil
}

// legacyFunc is sym as a prestd-ABI handler, nil if it is not one.
func legacyFunc(sym any) func() (string, int) {
	switch f := sym.(type) {
	case func() string:
		return func() (string, int) { return f(), http.StatusOK }
	case func() (string, int):
		return f
	}
	return nil
}

// lockYields is how many times a legacy call yields to other goroutines,
// retrying the lock, before it parks on a timer. Legacy calls are usually
// microseconds long, so under load the lock is mostly free again after a
// yield or two; parking every waiter on a timer and a select instead cost
// a fifth of the plugin path's throughput (measured with wrk, 50
// connections, lib/src/hello.go). Once a waiter has parked, the channel
// hands the lock to parked waiters first, in order, so yielding callers
// stop winning and park in turn after their yields: behind a slow call
// the cost is a few microseconds per caller, and no one starves.
const lockYields = 100

// lock takes the legacy lock, waiting at most wait (and while ctx lasts).
func (a *artifact) lock(ctx context.Context, wait time.Duration) bool {
	if a.tryLock() {
		return true
	}
	deadline := time.Now().Add(wait)
	for range lockYields {
		if ctx.Err() != nil {
			return false
		}
		runtime.Gosched()
		if a.tryLock() {
			return true
		}
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case a.sem <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// tryLock takes the legacy lock if it is free.
func (a *artifact) tryLock() bool {
	select {
	case a.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (a *artifact) unlock() { <-a.sem }

// take marks a free copy busy and returns its index. The caller holds a
// slot of sem, so one is free: every other slot holder holds at most one
// copy. The scan starts at a rotating index, spreading calls (and the
// cache lines they touch) across the copies; a copy freed behind the
// scan while another is taken ahead of it sends it round again.
func (a *artifact) take() int {
	n := uint32(len(a.copies))
	start := a.next.Add(1)
	for {
		for j := range n {
			i := (start + j) % n
			if a.copies[i].busy.CompareAndSwap(false, true) {
				return int(i)
			}
		}
		runtime.Gosched()
	}
}

// Concurrent reports whether calls may run at the same time: not for
// prestd's ABI, whose calls share the plugin's globals; with copies, as
// many run at once as there are copies, bounded by the copies
// themselves.
func (h *Handler) Concurrent() bool { return h.ABI == ABIStandard }

// ServeHTTP serves r with the handler, through either ABI, and returns
// what went wrong instead of answering it: the HTTP layer maps errors to
// statuses in one place. A panic is returned as ErrPanic, except
// http.ErrAbortHandler, which net/http handles itself.
//
// A prestd-ABI handler gets r's route variables and query through the
// plugin's globals. Calls into one copy of the plugin are serialised
// (one copy unless [plugin.NAME] copies says more); a call that
// finds every copy busy and cannot start within the plugin's wait bound (or before r's context
// ends) fails with ErrBusy (ErrTimeout at r's deadline). The adapter
// checks the status the handler returned (ErrStatus) and writes the body
// as it is, with a JSON content type if it is valid JSON. Timeouts are
// the caller's: the handler runs until it returns, holding the lock.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) (err error) {
	if h.ABI == ABIStandard {
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
	body, status, err := h.Call(r.Context(), h.vars(), r.URL.Query())
	if err != nil {
		return err
	}
	if status < 200 || status > 599 {
		return newError(ErrStatus, h.Plugin, nil, "plugin %q: %s returned status %d; want 200-599 (or 0 for 200)", h.Plugin, h.Symbol, status)
	}
	ct := textType
	if json.Valid([]byte(body)) {
		ct = jsonType
	}
	hdr := w.Header()
	// Canonical keys, assigned once: Set would allocate a slice per call,
	// and a second assignment to a map of 8 entries grows it, even with
	// the key already there. The values are shared and cap 1, so a later
	// Add appends to a copy.
	hdr["Content-Type"] = ct
	// net/http adds the Content-Length of a body this small itself (the
	// handler writes it at once, unflushed, and returns), outside the
	// header map: one entry less to grow it and to copy at WriteHeader.
	// HEAD has no body to measure.
	if len(body) > autoLengthMax || r.Method == http.MethodHead {
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body) // a client that left is not the plugin's failure
	return nil
}

// The Content-Type values of prestd-ABI answers, shared by all: see
// ServeHTTP.
var (
	textType = []string{"text/plain; charset=utf-8"}[:1:1]
	jsonType = []string{"application/json"}[:1:1]
)

// autoLengthMax is the largest body ServeHTTP leaves to net/http to
// measure: it computes the length of a response whose body fits its
// buffer (2 KiB; "under a few KB" in ResponseWriter.Write's doc) when
// the handler returns.
const autoLengthMax = 1024

// vars are the route variables a prestd-ABI handler finds in HTTPVars.
// Each call gets fresh maps in HTTPVars and URLQuery (these two, about a
// fifth of the adapter's time, see `make bench`): a prestd plugin may keep
// the maps it was given (a goroutine, a cache) or write to them, and
// reused maps would change under it on the next call. The server's cost
// is kept elsewhere; the plugin's contract is prestd's.
func (h *Handler) vars() map[string]string {
	return map[string]string{"file": h.Plugin, "func": h.Fn}
}

// Call runs a prestd-ABI handler with route variables vars and query
// in a free copy of the plugin, under that copy's lock, and returns its
// body and status (0 becomes 200). ServeHTTP is Call with the request's
// own.
func (h *Handler) Call(ctx context.Context, vars map[string]string, query map[string][]string) (body string, status int, err error) {
	a := h.art
	if !a.lock(ctx, h.wait) {
		switch ctx.Err() {
		case context.DeadlineExceeded: // the plugin's timeout passed in the queue
			return "", 0, newError(ErrTimeout, h.Plugin, ctx.Err(), "plugin %q: %s did not answer in time (busy with another call)", h.Plugin, h.Symbol)
		case context.Canceled: // the client left
			return "", 0, fmt.Errorf("waiting for plugin %q: %w", h.Plugin, ctx.Err())
		}
		return "", 0, newError(ErrBusy, h.Plugin, nil, "plugin %q is busy with another call; try again", h.Plugin)
	}
	defer a.unlock()
	if h.copies == nil {
		return h.callLocked(vars, query)
	}
	i := a.take()
	c := a.copies[i]
	defer c.busy.Store(false) // before the slot goes: see take
	return h.callIn(c, h.copies[i], vars, query)
}

// callLocked calls the plugin without copies, holding its lock.
func (h *Handler) callLocked(vars map[string]string, query map[string][]string) (body string, status int, err error) {
	return h.callIn(h.art, h.legacy, vars, query)
}

// callIn calls fn, the handler of copy a, which the caller holds, with
// a's globals set to vars and query for the call.
func (h *Handler) callIn(a *artifact, fn func() (string, int), vars map[string]string, query map[string][]string) (body string, status int, err error) {
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
	body, status = fn()
	if status == 0 {
		status = http.StatusOK
	}
	return body, status, nil
}

func (h *Handler) panicError(v any) error {
	return PanicError(h.Plugin, fmt.Sprintf("plugin %q: %s panicked", h.Plugin, h.Symbol), v)
}

// PanicError is the ErrPanic for value v recovered in plugin's code, with
// msg for clients, the value as Detail, and the goroutine's stack. Call it
// in the deferred function that recovered v.
func PanicError(plugin, msg string, v any) *Error {
	stack := debug.Stack()
	return &Error{Kind: ErrPanic, Plugin: plugin, Msg: msg, Err: fmt.Errorf("panic: %v", v),
		Detail: fmt.Sprint(v), Stack: stack, Site: panicSite(stack)}
}

// panicSite finds, in a stack taken by the function that recovered, the
// frame that panicked: the one below runtime's panic. It returns its file's
// base name and line ("boom.go:12"), never the directory, or "".
func panicSite(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	for i, l := range lines {
		// panic(...), its file, then the function that panicked and
		// its file: "\t/dir/file.go:12 +0x1d".
		if !strings.HasPrefix(l, "panic(") || i+3 >= len(lines) {
			continue
		}
		loc := strings.TrimSpace(lines[i+3])
		loc, _, _ = strings.Cut(loc, " ")
		file, line, ok := strings.Cut(loc, ".go:")
		if !ok {
			return ""
		}
		return path.Base(file) + ".go:" + line
	}
	return ""
}
