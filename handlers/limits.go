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
	name  string
	slots chan struct{} // MaxConcurrency tokens; nil: unbounded
	// release gives a slot back; made once, so that taking a slot
	// allocates no closure per request.
	release func()
	log     zerolog.Logger
	// composed caches, per plugin handler (one per version and function),
	// that handler behind the limits: composed once, not per request.
	composed sync.Map // Handler -> Handler
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
	st := &pluginState{PluginSetup: setup, name: name, log: s.Log.With().Str("plugin", name).Logger()}
	if setup.MaxConcurrency > 0 {
		st.slots = make(chan struct{}, setup.MaxConcurrency)
		st.release = func() { <-st.slots }
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
		limitReader(w, r, st.MaxBodyBytes)
	}
	return nil
}

// wrap returns h behind the plugin's limits, composed once per handler
// (one per version and function), not per request: the concurrency bound
// (for handlers that run concurrently: a prestd-ABI handler reports
// Concurrent() false and queues for its plugin within legacywait) and the
// timeout, then the sdk's view of the plugin on the request.
func (st *pluginState) wrap(h Handler) Handler {
	if c, ok := st.composed.Load(h); ok {
		return c.(Handler)
	}
	inner := st.withEnv(h)
	bounded := st.slots != nil
	if c, ok := h.(interface{ Concurrent() bool }); ok && !c.Concurrent() {
		bounded = false // one call at a time already, with its own wait bound
	}
	var c Handler = HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		release := noRelease
		if bounded {
			var err error
			if release, err = st.acquire(); err != nil {
				return err
			}
		}
		if st.Timeout > 0 {
			return serveWithTimeout(w, r, st.Timeout, inner.ServeHTTP, release, st.name)
		}
		defer release()
		return inner.ServeHTTP(w, r)
	})
	actual, _ := st.composed.LoadOrStore(h, c)
	return actual.(Handler)
}

// noRelease is release when no slot was taken.
func noRelease() {}

// acquire takes a concurrency slot, or fails at once when none is free:
// a client is better told 429 now than left queueing. The slot is held
// until the handler returns, however late: one that outlives its timeout
// still holds it.
func (st *pluginState) acquire() (release func(), err error) {
	if st.slots == nil {
		return noRelease, nil
	}
	select {
	case st.slots <- struct{}{}:
		return st.release, nil
	default:
		return nil, &limitError{kind: errTooMany, plugin: st.name,
			msg: fmt.Sprintf("plugin %q is at its limit of %d concurrent requests; try again", st.name, st.MaxConcurrency)}
	}
}

// withEnv hands the handler the sdk's view of the plugin and request. In
// the access layer it is the request's info, which the request's context
// already is: no context, request copy or map more per call (sdk.Vars
// makes the route variables' map when a plugin asks).
func (st *pluginState) withEnv(next Handler) Handler {
	return HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		info := infoFrom(r.Context())
		if info == nil {
			env := st.env()
			return next.ServeHTTP(w, r.WithContext(sdk.NewContext(r.Context(), &env)))
		}
		info.env = st.env()
		info.env.RequestID, info.env.File, info.env.Func = info.id, info.file, info.fn
		info.hasEnv.Store(true)
		return next.ServeHTTP(w, r)
	})
}

// env is the plugin's part of the sdk's Env.
func (st *pluginState) env() sdk.Env {
	return sdk.Env{Plugin: st.name, Settings: st.Settings, Secrets: st.Secrets, Log: st.log, Bus: st.Bus, Tasks: st.Tasks}
}

// errTimeout is a handler outliving its plugin's timeout; errBufferFull a
// response under a timeout larger than a buffer may hold.
var (
	errTimeout    = errors.New("plugin did not answer in time")
	errBufferFull = errors.New("response too large to buffer")
)

// MaxBufferedBytes bounds a response buffered under a timeout.
const MaxBufferedBytes = 16 << 20

// serveWithTimeout runs serve with r's context ending after d. The
// response is buffered (at most MaxBufferedBytes): if serve finishes in
// time it is sent as written, otherwise the client gets 504 while serve
// runs on, writing into the void. Streaming responses do not stream under
// a timeout. A client that leaves first is a 499, not a timeout. release
// runs when serve returns, before the caller hears of it. A handler's
// http.ErrAbortHandler is re-raised on the caller's goroutine, where
// net/http expects it, as http.TimeoutHandler does.
func serveWithTimeout(w http.ResponseWriter, r *http.Request, d time.Duration, serve func(http.ResponseWriter, *http.Request) error, release func(), plugin string) error {
	ctx, cancel := context.WithTimeout(r.Context(), d)
	defer cancel()
	tw := &bufferedWriter{header: make(http.Header), plugin: plugin}
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
		if err := r.Context().Err(); err != nil {
			return fmt.Errorf("waiting for plugin %q: %w", plugin, err) // the client left; the handler saw it
		}
		if o.err != nil {
			return o.err
		}
		if tw.overflow {
			return fmt.Errorf("%w: plugin %q wrote more than %d bytes, the most a response under a timeout (plugin.%s.timeout) may buffer", errBufferFull, plugin, MaxBufferedBytes, plugin)
		}
		tw.copyTo(w)
		return nil
	case <-ctx.Done():
		tw.abandon()
		if err := r.Context().Err(); err != nil {
			return fmt.Errorf("waiting for plugin %q: %w", plugin, err) // the client left
		}
		return errTimeout
	}
}

// bufferedWriter holds a response until the handler finishes in time.
type bufferedWriter struct {
	plugin    string
	mu        sync.Mutex // guards everything: the handler may outlive us
	header    http.Header
	status    int
	body      bytes.Buffer
	abandoned bool
	overflow  bool // more than MaxBufferedBytes were written
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
	if b.body.Len()+len(p) > MaxBufferedBytes {
		b.overflow = true
		return 0, errBufferFull
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
