// Package child is the runtime of an isolated plugin's process: the main
// that plugind generates for a plugin (zz_plugind_main.go) fills a Plugin
// with the plugin's handlers, globals and hooks and calls Main, which
// serves them over HTTP on the Unix socket the server names.
//
// It is imported by generated code only. It depends on the standard
// library, package sdk and zerolog, nothing else of plugind's, so that a
// plugin's process stays small and may use any versions of other modules.
//
// The protocol between server and child, all over the socket:
//
//	GET /_plugind/ready    200 once Init has run (liveness; never plugin code)
//	GET /_plugind/health   the Health hook: 200 "ok", or 503 and its error
//	any other request      a call: header X-Plugind-Symbol names the handler
//
// The server sets X-Plugind-Symbol, -File, -Func and -Request-Id on each
// call (after deleting whatever a client sent under those names); the
// child removes them before the plugin sees the request. A call that
// fails inside the child (a panic, a bad status, an unknown symbol) is
// answered with header X-Plugind-Error naming the kind and a JSON Failure
// body, which the server turns into its own error response.
package child

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/sdk"
)

// Environment variables the server starts a child with.
const (
	EnvSocket = "PLUGIND_SOCKET" // the Unix socket to listen on
	EnvPlugin = "PLUGIND_PLUGIN" // the plugin's name
	EnvConfig = "PLUGIND_CONFIG" // a 0600 JSON file of Config; removed once read
	EnvParent = "PLUGIND_PARENT" // the server's pid: the child exits when it is gone
)

// Headers of the protocol.
const (
	HeaderSymbol    = "X-Plugind-Symbol"
	HeaderFile      = "X-Plugind-File"
	HeaderFunc      = "X-Plugind-Func"
	HeaderRequestID = "X-Plugind-Request-Id"
	HeaderError     = "X-Plugind-Error"
	HeaderRemote    = "X-Plugind-Remote-Addr" // the client's address, as r.RemoteAddr
)

// Paths of the protocol.
const (
	PathReady  = "/_plugind/ready"
	PathHealth = "/_plugind/health"
)

// Error kinds in HeaderError.
const (
	ErrKindPanic     = "panic"
	ErrKindStatus    = "status"
	ErrKindNoHandler = "nohandler"
	ErrKindBusy      = "busy"
)

// Exit codes the server reads as something other than a crash.
const (
	ExitInit   = 3 // the Init hook failed; the reason is the last stderr line
	ExitConfig = 4 // the child was started wrongly
)

// Config is what the server hands a child besides its environment.
type Config struct {
	Settings map[string]any    `json:"settings"`
	Secrets  map[string]string `json:"secrets"`
	// HookTimeout bounds Init and Close; 0: 30 s.
	HookTimeout time.Duration `json:"hook_timeout"`
	// LegacyWait bounds a prestd-ABI call's wait for the one before it;
	// 0: 30 s.
	LegacyWait time.Duration `json:"legacy_wait"`
}

// Failure is the body of a call that failed in the child.
type Failure struct {
	Msg    string `json:"msg"`
	Detail string `json:"detail,omitempty"` // plugin-written: a panic's value
	Site   string `json:"site,omitempty"`
	Stack  string `json:"stack,omitempty"`
}

// Plugin is what generated code knows of a plugin. Globals are pointers
// to the plugin's variables, nil when it does not declare them.
type Plugin struct {
	Legacy   map[string]func() (string, int)
	Standard map[string]func(http.ResponseWriter, *http.Request)

	HTTPVars *map[string]string
	URLQuery *map[string][]string
	Settings *map[string]any
	Secrets  *map[string]string

	Init   func(context.Context, map[string]any) error
	Close  func(context.Context) error
	Health func(context.Context) error
}

// Main serves p until SIGTERM or SIGINT, then runs its Close hook and
// exits. It does not return.
func Main(p Plugin) {
	log := zerolog.New(os.Stderr).With().Timestamp().Str("plugin", os.Getenv(EnvPlugin)).Logger()
	if err := run(p, log); err != nil {
		var ie initError
		if errors.As(err, &ie) {
			log.Error().Err(ie.err).Msg("Init failed")
			os.Exit(ExitInit)
		}
		log.Error().Err(err).Msg("plugin process cannot serve")
		os.Exit(ExitConfig)
	}
	os.Exit(0)
}

type initError struct{ err error }

func (e initError) Error() string { return "Init: " + e.err.Error() }

func run(p Plugin, log zerolog.Logger) error {
	sock, name := os.Getenv(EnvSocket), os.Getenv(EnvPlugin)
	if sock == "" || name == "" {
		return fmt.Errorf("%s and %s must be set: this program is started by plugind", EnvSocket, EnvPlugin)
	}
	var cfg Config
	if path := os.Getenv(EnvConfig); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading the configuration: %w", err)
		}
		_ = os.Remove(path) // read once: secrets do not stay on disk
		if err := json.Unmarshal(data, &cfg); err != nil {
			return fmt.Errorf("decoding the configuration: %w", err)
		}
	}
	if cfg.HookTimeout <= 0 {
		cfg.HookTimeout = 30 * time.Second
	}
	if cfg.LegacyWait <= 0 {
		cfg.LegacyWait = 30 * time.Second
	}
	s := &server{p: p, name: name, log: log, cfg: cfg, sem: make(chan struct{}, 1)}
	if p.Settings != nil {
		*p.Settings = cfg.Settings
	}
	if p.Secrets != nil {
		*p.Secrets = cfg.Secrets
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go exitWithParent(log)
	if p.Init != nil {
		ictx, cancel := context.WithTimeout(sdk.NewContext(ctx, s.env("")), cfg.HookTimeout)
		err := p.Init(ictx, cfg.Settings)
		cancel()
		if err != nil {
			return initError{err}
		}
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	// The server drains calls before it signals; whatever is left gets
	// the hook timeout to finish.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HookTimeout)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if p.Close != nil {
		if err := p.Close(sdk.NewContext(sctx, s.env(""))); err != nil {
			log.Warn().Err(err).Msg("plugin Close failed")
		}
	}
	return nil
}

// exitWithParent ends the process when the server that started it is
// gone (killed without the chance to stop its children): an orphan
// would hold its socket and memory for nothing.
func exitWithParent(log zerolog.Logger) {
	parent, err := strconv.Atoi(os.Getenv(EnvParent))
	if err != nil {
		parent = os.Getppid()
	}
	for ; ; time.Sleep(time.Second) {
		if os.Getppid() != parent {
			log.Warn().Msg("plugind is gone; exiting")
			os.Exit(0)
		}
	}
}

// server serves the protocol.
type server struct {
	p    Plugin
	name string
	log  zerolog.Logger
	cfg  Config
	sem  chan struct{} // the legacy lock: legacy calls share the globals
}

// env is the sdk's view of the plugin, for request id (or "" in hooks).
func (s *server) env(requestID string) *sdk.Env {
	// Bus and Tasks stay nil: the sdk answers sdk.ErrNoBus (and its tasks
	// error) in a process, as documented in the README.
	return &sdk.Env{Plugin: s.name, RequestID: requestID, Settings: s.cfg.Settings, Secrets: s.cfg.Secrets, Log: s.log}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	symbol := r.Header.Get(HeaderSymbol)
	if symbol == "" {
		s.control(w, r)
		return
	}
	h := r.Header
	vars := map[string]string{"file": h.Get(HeaderFile), "func": h.Get(HeaderFunc)}
	env := s.env(h.Get(HeaderRequestID))
	env.Vars = vars
	if addr := h.Get(HeaderRemote); addr != "" {
		r.RemoteAddr = addr
	}
	for _, k := range []string{HeaderSymbol, HeaderFile, HeaderFunc, HeaderRequestID, HeaderRemote} {
		h.Del(k)
	}
	r = r.WithContext(sdk.NewContext(r.Context(), env))
	if f := s.p.Standard[symbol]; f != nil {
		s.standard(w, r, symbol, f)
		return
	}
	if f := s.p.Legacy[symbol]; f != nil {
		s.legacy(w, r, symbol, vars, f)
		return
	}
	fail(w, ErrKindNoHandler, Failure{Msg: fmt.Sprintf("plugin %q has no %s", s.name, symbol)})
}

// control answers the server's own requests.
func (s *server) control(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathReady:
		_, _ = io.WriteString(w, "ok")
	case PathHealth:
		if s.p.Health == nil {
			w.WriteHeader(http.StatusNoContent) // no hook
			return
		}
		err := callHook(sdk.NewContext(r.Context(), s.env("")), s.p.Health)
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, err.Error())
			return
		}
		_, _ = io.WriteString(w, "ok")
	default:
		http.NotFound(w, r)
	}
}

func callHook(ctx context.Context, hook func(context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return hook(ctx)
}

// recorder notes whether the response has started.
type recorder struct {
	http.ResponseWriter
	started bool
}

func (rw *recorder) WriteHeader(code int) {
	if code >= 200 {
		rw.started = true
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(p []byte) (int, error) {
	rw.started = true
	return rw.ResponseWriter.Write(p)
}

func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

func (rw *recorder) Flush() {
	rw.started = true
	_ = http.NewResponseController(rw.ResponseWriter).Flush()
}

func (s *server) standard(w http.ResponseWriter, r *http.Request, symbol string, f func(http.ResponseWriter, *http.Request)) {
	rw := &recorder{ResponseWriter: w}
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler || rw.started {
			panic(http.ErrAbortHandler) // the server sees a cut-off response
		}
		s.panicked(w, symbol, v)
	}()
	f(rw, r)
}

func (s *server) legacy(w http.ResponseWriter, r *http.Request, symbol string, vars map[string]string, f func() (string, int)) {
	if !s.lock(w, r) {
		return
	}
	defer func() { <-s.sem }()
	body, status, v := s.callLegacy(vars, r.URL.Query(), f)
	if v != nil {
		s.panicked(w, symbol, v)
		return
	}
	if status == 0 {
		status = http.StatusOK
	}
	if status < 200 || status > 599 {
		fail(w, ErrKindStatus, Failure{Msg: fmt.Sprintf("plugin %q: %s returned status %d; want 200-599 (or 0 for 200)", s.name, symbol, status)})
		return
	}
	ct := "text/plain; charset=utf-8"
	if json.Valid([]byte(body)) {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// lock takes the legacy lock, waiting at most LegacyWait: a free lock
// is taken without a timer. It answers the call itself when it cannot.
func (s *server) lock(w http.ResponseWriter, r *http.Request) bool {
	select {
	case s.sem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(s.cfg.LegacyWait)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return true
	case <-r.Context().Done():
		return false // the server gave up; nobody reads the answer
	case <-t.C:
		fail(w, ErrKindBusy, Failure{Msg: fmt.Sprintf("plugin %q is busy with another call; try again", s.name)})
		return false
	}
}

// callLegacy fills the globals, calls f and empties them, under the lock.
func (s *server) callLegacy(vars map[string]string, query map[string][]string, f func() (string, int)) (body string, status int, panicked any) {
	p := s.p
	defer func() {
		if p.HTTPVars != nil {
			*p.HTTPVars = nil
		}
		if p.URLQuery != nil {
			*p.URLQuery = nil
		}
		panicked = recover()
	}()
	if p.HTTPVars != nil {
		*p.HTTPVars = vars
	}
	if p.URLQuery != nil {
		*p.URLQuery = query
	}
	body, status = f()
	return body, status, nil
}

func (s *server) panicked(w http.ResponseWriter, symbol string, v any) {
	stack := debug.Stack()
	fail(w, ErrKindPanic, Failure{
		Msg:    fmt.Sprintf("plugin %q: %s panicked", s.name, symbol),
		Detail: fmt.Sprint(v), Site: panicSite(stack), Stack: string(stack),
	})
}

func fail(w http.ResponseWriter, kind string, f Failure) {
	w.Header().Set(HeaderError, kind)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_ = json.NewEncoder(w).Encode(f)
}

// panicSite is the frame below runtime's panic, as file.go:line.
func panicSite(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "panic(") || i+2 >= len(lines) {
			continue
		}
		loc, _, _ := strings.Cut(strings.TrimSpace(lines[i+2]), " ")
		file, line, ok := strings.Cut(loc, ".go:")
		if !ok {
			return ""
		}
		if i := strings.LastIndexByte(file, '/'); i >= 0 {
			file = file[i+1:]
		}
		return file + ".go:" + line
	}
	return ""
}
