package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/sdk"
)

// PluginSetup is what the server knows of one plugin from configuration:
// the settings and secrets it hands over, the limits it enforces.
type PluginSetup struct {
	Settings       map[string]any
	Secrets        map[string]string
	Timeout        time.Duration // 0: none
	MaxConcurrency int           // standard ABI; 0: none
	Methods        []string      // empty: all
	MaxBodyBytes   int64         // 0: none
	Bus            sdk.Bus       // for requests: publish and dispatch
	Tasks          sdk.Tasks
}

// pluginState is a plugin's setup with what enforcing it needs, made on
// the plugin's first successful lookup and kept for the server's life.
type pluginState struct {
	PluginSetup
	slots chan struct{} // MaxConcurrency tokens; nil: unbounded
	log   zerolog.Logger
}

// states caches pluginState by plugin name.
type states struct {
	mu sync.RWMutex // guards m
	m  map[string]*pluginState
}

// existing returns the state of name if it has one: a configured plugin,
// or one that was served before. Limits apply before any lookup then.
func (s *Server) existing(name string) *pluginState {
	s.states.mu.RLock()
	defer s.states.mu.RUnlock()
	return s.states.m[name]
}

// state returns the state of name, making it. Call it only for configured
// plugins and plugins that exist, so that requests for random names
// cannot grow the map.
func (s *Server) state(name string) *pluginState {
	if st := s.existing(name); st != nil {
		return st
	}
	s.states.mu.Lock()
	defer s.states.mu.Unlock()
	if st := s.states.m[name]; st != nil {
		return st
	}
	var setup PluginSetup
	if s.Setup != nil {
		setup = s.Setup(name)
	}
	st := &pluginState{PluginSetup: setup, log: s.Log.With().Str("plugin", name).Logger()}
	if setup.MaxConcurrency > 0 {
		st.slots = make(chan struct{}, setup.MaxConcurrency)
	}
	if s.states.m == nil {
		s.states.m = make(map[string]*pluginState)
	}
	s.states.m[name] = st
	return st
}

// Limit errors; writeError maps them.
var (
	errTooMany  = errors.New("too many concurrent requests")
	errTooLarge = errors.New("request body too large")
	errMethod   = errors.New("method not allowed by configuration")
)

// limitError is a limit a request ran into, with a client-safe message.
type limitError struct {
	kind   error
	plugin string
	msg    string
	allow  []string
}

func (e *limitError) Error() string { return e.msg }
func (e *limitError) Unwrap() error { return e.kind }

// admit applies the configured method list and body limit before the
// plugin is called.
func (st *pluginState) admit(r *http.Request, w http.ResponseWriter, plugin string) error {
	if len(st.Methods) > 0 && !slices.Contains(st.Methods, r.Method) && !(r.Method == http.MethodHead && slices.Contains(st.Methods, http.MethodGet)) {
		return &limitError{kind: errMethod, plugin: plugin, allow: st.Methods,
			msg: fmt.Sprintf("plugin %q does not accept %s (configured: %s)", plugin, r.Method, strings.Join(st.Methods, ", "))}
	}
	if st.MaxBodyBytes > 0 {
		if r.ContentLength > st.MaxBodyBytes {
			return &limitError{kind: errTooLarge, plugin: plugin,
				msg: fmt.Sprintf("request body of %d bytes exceeds plugin %q's limit of %d", r.ContentLength, plugin, st.MaxBodyBytes)}
		}
		r.Body = http.MaxBytesReader(w, r.Body, st.MaxBodyBytes)
	}
	return nil
}

// acquire takes a concurrency slot, or fails at once when none is free:
// a client is better told 429 now than left queueing.
func (st *pluginState) acquire(plugin string) (release func(), err error) {
	if st.slots == nil {
		return func() {}, nil
	}
	select {
	case st.slots <- struct{}{}:
		return func() { <-st.slots }, nil
	default:
		return nil, &limitError{kind: errTooMany, plugin: plugin,
			msg: fmt.Sprintf("plugin %q is at its limit of %d concurrent requests; try again", plugin, st.MaxConcurrency)}
	}
}

// withEnv returns r carrying the sdk view of the plugin and request.
func (st *pluginState) withEnv(r *http.Request, plugin string, vars map[string]string) *http.Request {
	env := &sdk.Env{Plugin: plugin, Vars: vars, Settings: st.Settings, Secrets: st.Secrets, Log: st.log, Bus: st.Bus, Tasks: st.Tasks}
	if info := infoFrom(r.Context()); info != nil {
		env.RequestID = info.id
	}
	return r.WithContext(sdk.NewContext(r.Context(), env))
}

// errTimeout is a standard handler outliving its plugin's timeout.
var errTimeout = errors.New("plugin did not answer in time")

// serveWithTimeout runs serve with r's context ending after d. The
// response is buffered: if serve finishes in time it is sent as written,
// otherwise the client gets 504 while serve runs on, writing into the
// void. Streaming responses do not stream under a timeout. release runs
// when serve returns, however late: a handler that outlives its timeout
// still holds its concurrency slot. A handler's http.ErrAbortHandler is
// re-raised on the caller's goroutine, where net/http expects it, as
// http.TimeoutHandler does.
func serveWithTimeout(w http.ResponseWriter, r *http.Request, d time.Duration, serve func(http.ResponseWriter, *http.Request) error, release func()) error {
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	tw := &bufferedWriter{header: make(http.Header)}
	type outcome struct {
		err   error
		abort any
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		// The slot is released before the caller hears the outcome: a
		// client that has its answer may send the next request at once,
		// and must not find its own finished request still counted.
		defer func() {
			release()
			done <- o
		}()
		defer func() {
			o.abort = recover() // only http.ErrAbortHandler gets here
		}()
		o.err = serve(tw, r.WithContext(ctx))
	}()
	select {
	case o := <-done:
		if o.abort != nil {
			panic(o.abort)
		}
		if o.err != nil {
			return o.err
		}
		tw.copyTo(w)
		return nil
	case <-ctx.Done():
		tw.abandon()
		return errTimeout
	}
}

// bufferedWriter holds a response until the handler finishes in time.
type bufferedWriter struct {
	mu        sync.Mutex // guards everything: the handler may outlive us
	header    http.Header
	status    int
	body      bytes.Buffer
	abandoned bool
}

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(code int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.abandoned {
		return 0, http.ErrHandlerTimeout
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedWriter) abandon() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.abandoned = true
}

func (b *bufferedWriter) copyTo(w http.ResponseWriter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, v := range b.header {
		w.Header()[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	w.Write(b.body.Bytes())
}
