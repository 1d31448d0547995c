// Package server wires configuration, the plugin loader and the HTTP
// handlers into a running http.Server and owns its lifecycle: start-up
// checks, readiness, and graceful shutdown when its context ends.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/bus"
	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/handlers"
	"github.com/plugind/plugind/internal/sse"
	"github.com/plugind/plugind/isolate"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/metrics"
	"github.com/plugind/plugind/sdk"
	"github.com/plugind/plugind/tasks"
)

// state is where the server is in its life, for /readyz.
type state int32

const (
	starting state = iota
	serving
	draining
)

// startupEvents bounds the start-up events the bus keeps for later
// listeners: one per plugin found, and a few more.
const startupEvents = 4096

// Server is one plugind HTTP server.
type Server struct {
	cfg     config.Config
	log     zerolog.Logger
	loader  *loader.Loader
	metrics *metrics.Metrics
	auth    *auth.Authenticator
	certs   *certStore // nil without https.mode
	bus     *bus.Bus
	tap     *bus.Tap       // /_EVENTS
	streams *sse.Streams   // /_EVENTS and the admin page's
	events  *eventQueue    // server events on the bus
	tasks   *tasks.Manager // plugins' background tasks
	closing chan struct{}  // closed when shutdown begins
	state   atomic.Int32   // a state
	warmup  atomic.Value   // string: "off", "running", "done", "failed"
	admin   adminState     // the operator page's records

	isolated *isolate.Manager // plugins in processes of their own

	mu       sync.Mutex // guards closers and closed
	closers  []closer   // what New and Serve acquired, in that order
	closed   bool
	closeErr error
}

// closer releases one resource New or Serve acquired.
type closer struct {
	name string
	fn   func(ctx context.Context) error
}

// NewPipeline makes the build pipeline cfg describes, for the loader and
// for the command line's build, prune and check, and returns it with the
// server's build it makes artifacts for.
func NewPipeline(ctx context.Context, cfg config.Config, log zerolog.Logger) (*build.Pipeline, build.HostBuild, error) {
	host, err := build.HostBuildInfo()
	if err != nil {
		return nil, host, err
	}
	var check build.LoadChecker
	if cfg.Plugins.LoadCheckTimeout > 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, host, fmt.Errorf("finding the server binary for load checks: %w", err)
		}
		check = build.ExecLoadCheck(exe, cfg.Plugins.LoadCheckTimeout)
	}
	p, err := build.New(ctx, build.Options{
		SrcDir:    cfg.SrcDir(),
		CacheDir:  cfg.Plugins.CacheDir,
		ModuleDir: cfg.Plugins.ModuleDir,
		Go:        cfg.Plugins.Go,
		Timeout:   cfg.Plugins.BuildTimeout,
		LoadCheck: check,
		Prebuilt:  cfg.Plugins.Build == config.BuildOff,
		Host:      &host,
		Log:       log,
	})
	return p, host, err
}

// NewLoader makes the loader cfg describes, over a pipeline of its own
// (NewPipeline), for the server and for the command line's list. extend,
// if not nil, adds to the loader's options what only a serving server has
// (events, the bus, tasks).
func NewLoader(cfg config.Config, log zerolog.Logger, extend func(*loader.Options)) (*loader.Loader, build.HostBuild, error) {
	p, host, err := NewPipeline(context.Background(), cfg, log)
	if err != nil {
		return nil, host, err
	}
	opts := loader.Options{
		Pipeline:         p,
		BuildWait:        cfg.Plugins.BuildWait,
		Reload:           cfg.Plugins.Reload == config.ReloadOnChange,
		MaxLoadedBytes:   cfg.Plugins.MemoryBudgetMB << 20,
		RefuseOverBudget: cfg.Plugins.RefuseOverBudget,
		LegacyWait:       cfg.Plugins.LegacyWait,
		Copies:           func(name string) int { return cfg.Plugin(name).Copies },
		Settings: func(name string) (map[string]any, map[string]string) {
			return cfg.Plugin(name).Settings, cfg.Secrets(name)
		},
		Log: log,
	}
	if extend != nil {
		extend(&opts)
	}
	l, err := loader.New(opts)
	return l, host, err
}

// New checks the environment, discovers plugins and prepares the server.
// It logs one line per discovered plugin, and what is missing to build
// plugins here, if anything. Middleware plugins load when Serve starts.
// The binary must call loader.RunLoadCheckIfAsked (or handle
// loader.LoadCheckCommand) first thing, since the server runs itself to
// check new plugins.
func New(ctx context.Context, cfg config.Config, log zerolog.Logger, opts ...Option) (_ *Server, err error) {
	var so options
	for _, opt := range opts {
		opt(&so)
	}
	if cfg.File != "" {
		log.Info().Str("file", cfg.File).Msg("configuration read")
	}
	if len(cfg.Unknown) > 0 {
		log.Warn().Strs("keys", cfg.Unknown).Msg("configuration keys not used by plugind are ignored")
	}
	s := &Server{cfg: cfg, log: log, tap: &bus.Tap{}, closing: make(chan struct{})}
	// Whatever New acquired before failing is released, last first.
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	s.warmup.Store("off")
	s.metrics = metrics.New(func() []loader.Stat { return s.loader.Stats() })
	s.bus = bus.New(func(m bus.Message) {
		if m.Replayed {
			if m.Err != nil {
				log.Warn().Err(m.Err).Str("event", m.Name).Msg("a listener of a replayed start-up event failed")
			}
		} else {
			s.metrics.BusMessage(string(m.Kind), m.Name, m.Delivered, m.Err != nil)
		}
		if cfg.Bus.Events || cfg.Admin.Enabled {
			s.tap.Observe(m)
		}
	})
	// Start-up events (plugind.plugin.registered, plugind.server.starting,
	// middleware plugins built and loaded) are published before any
	// plugin can subscribe: the bus keeps them for later listeners, until
	// the server is ready.
	s.bus.Retain(startupEvents)
	s.events = newEventQueue(s.bus, log)
	s.newAdminState()
	s.streams = sse.New(sse.Options{Source: s.tap, Max: cfg.Bus.MaxStreams, WriteTimeout: cfg.Bus.WriteTimeout, Closing: s.closing, Log: log})
	s.onClose("server events", s.events.close)
	// The loader comes before the task store so that the store is
	// released first: tasks run plugin code, which must be done before
	// the plugins' Close hooks run. No plugin loads before the store
	// is open (plugins load on request, or when Serve starts).
	l, _, err := NewLoader(cfg, log, func(o *loader.Options) {
		o.Notify = func(ev loader.Event) {
			if ev.Kind == loader.EventSourceChanged {
				s.sourceChanged(ev.Plugin) // not an event of the bus or the metrics
			} else {
				s.pluginEvent(ev)
			}
			if so.onEvent != nil {
				so.onEvent(ev)
			}
		}
		o.Bus = s.bus
		o.Tasks = func(plugin string) sdk.Tasks { return s.tasks.For(plugin) }
	})
	if err != nil {
		return nil, err
	}
	s.loader = l
	s.onClose("plugins", func(ctx context.Context) error {
		if err := l.Close(ctx); err != nil {
			return fmt.Errorf("plugin Close hooks: %w", err)
		}
		return nil
	})
	// Isolated plugins' processes stop just before the in-process Close
	// hooks run (closers run last first).
	if s.isolated, err = newIsolated(cfg, l, log); err != nil {
		return nil, err
	}
	s.onClose("isolated plugins", func(ctx context.Context) error { s.closeIsolated(ctx); return nil })
	tm, err := tasks.Open(tasks.Options{
		Store: cfg.Tasks.Store, DSN: cfg.Tasks.DSN, Lease: cfg.Tasks.Lease,
		Dir: cfg.Tasks.Dir, Workers: cfg.Tasks.Workers, QueueSize: cfg.Tasks.Queue,
		Timeout: cfg.Tasks.Timeout, Retention: cfg.Tasks.Retention, MaxFinished: cfg.Tasks.MaxFinished, Log: log,
		OnFinish: func(t tasks.Task) { s.metrics.TaskFinished(t.Plugin, string(t.State)) },
	})
	if err != nil {
		return nil, fmt.Errorf("tasks: %w", err)
	}
	s.tasks = tm
	// Tasks get the same grace as requests, then are recorded interrupted.
	s.onClose("task store", tm.Shutdown)
	pluginKeys := make(map[string][]string)
	pluginJWT := make(map[string]bool)
	for name, p := range cfg.PluginConfigs {
		if len(p.APIKeys) > 0 {
			pluginKeys[name] = p.APIKeys
		}
		pluginJWT[name] = p.JWT
	}
	s.auth, err = auth.New(auth.Config{
		APIKeys: cfg.Auth.APIKeys, PluginKeys: pluginKeys, PluginJWT: pluginJWT,
		JWTKey: cfg.JWT.Key, JWTAlgo: cfg.JWT.Algo, JWTDefault: cfg.JWT.Default, Whitelist: cfg.JWT.Whitelist,
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cfg.HTTPS.Mode {
		if s.certs, err = newCertStore(cfg.HTTPS.Cert, cfg.HTTPS.Key, log); err != nil {
			return nil, err
		}
	}
	for _, p := range l.ToolchainProblems() {
		log.Warn().Str("problem", p).Msg("plugins cannot be built or loaded here")
	}
	plugins, skipped, err := l.Discover()
	if err != nil {
		log.Warn().Err(err).Str("dir", cfg.SrcDir()).Msg("plugin source directory unreadable")
	}
	names := make([]string, len(plugins))
	for i, p := range plugins {
		names[i] = p.Name
	}
	if err := cfg.CheckSecretEnv(names); err != nil {
		return nil, err
	}
	for _, p := range plugins {
		log.Info().Str("plugin", p.Name).Str("kind", string(p.Kind)).Msg("plugin registered")
		s.events.emit("plugind.plugin.registered", pluginEvent{Plugin: p.Name, Kind: string(p.Kind)})
	}
	for _, name := range skipped {
		log.Warn().Str("entry", name).Msg("plugin source skipped: its name is not a valid plugin name")
	}
	if removed, freed, err := l.Prune(cfg.Plugins.CacheMaxMB << 20); err != nil {
		log.Warn().Err(err).Msg("pruning the plugin cache")
	} else if removed > 0 {
		log.Info().Int("artifacts", removed).Int64("bytes", freed).Msg("plugin cache pruned")
	}
	// One watcher for every plugin: the loader's, which reloads in-process
	// plugins and tells of changes (sourceChanged) for those that run in
	// processes; so it runs where .so plugins cannot load if some plugin
	// may run in a process.
	if cfg.Plugins.Reload == config.ReloadOnChange && (loader.Supported || s.isolated != nil) {
		if err := l.Watch(); err != nil {
			log.Warn().Err(err).Msg("hot reload is off: cannot watch plugin sources")
		} else {
			log.Info().Str("dir", cfg.SrcDir()).Msg("hot reload on: watching plugin sources")
		}
	}
	return s, nil
}

// onClose adds a resource for Close to release.
func (s *Server) onClose(name string, fn func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, closer{name, fn})
}

// Close releases what New and Serve acquired, the last acquired first:
// background work (warm-up, prebuild, the certificate watcher), the HTTP
// server, the task store (running tasks get their grace, then are
// recorded interrupted), the plugins (their Close hooks), the event
// goroutine. Each step is bounded by lifecycle.serverShutdownTimeout;
// failures are logged and returned joined. Serve calls Close before it
// returns; call it after a New whose server is never served. Later calls
// return the first call's result.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.closeErr
	}
	s.closed = true
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	var errs []error
	for _, c := range slices.Backward(closers) {
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if d := s.cfg.Lifecycle.ServerShutdownTimeout; d > 0 {
			ctx, cancel = context.WithTimeout(ctx, d)
		}
		s.log.Debug().Str("resource", c.name).Msg("releasing")
		if err := c.fn(ctx); err != nil {
			s.log.Warn().Err(err).Str("resource", c.name).Msg("releasing a resource at shutdown")
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
		cancel()
	}
	err := errors.Join(errs...)
	s.mu.Lock()
	s.closeErr = err
	s.mu.Unlock()
	return err
}

// start loads the middleware plugins and builds the handler. A middleware
// that cannot load stops start-up (fail closed).
func (s *Server) start(ctx context.Context) (http.Handler, error) {
	var middleware []func(http.Handler) http.Handler
	for _, m := range s.cfg.Middleware {
		mw, err := s.loader.Middleware(ctx, m.File, m.Func)
		if err != nil {
			return nil, fmt.Errorf("middleware %s/%s (pluginmiddlewarelist): %w", m.File, m.Func, err)
		}
		middleware = append(middleware, mw)
		s.log.Info().Str("plugin", m.File).Str("func", m.Func).Msg("middleware loaded")
	}
	return s.handler(middleware), nil
}

// background warms the build cache, then prebuilds plugins if asked.
func (s *Server) background(ctx context.Context) {
	if !loader.Supported {
		return
	}
	if s.cfg.Plugins.WarmUp && !s.loader.Prebuilt() { // prebuilt: no go command to warm
		s.warmup.Store("running")
		if err := s.loader.WarmUp(ctx); err != nil {
			s.warmup.Store("failed")
		} else {
			s.warmup.Store("done")
		}
	}
	if s.cfg.Plugins.Prebuild {
		s.loader.Prebuild(ctx)
	}
}

// Handler is the server's HTTP handler without middleware plugins, for
// tests that bring their own listener or server.
func (s *Server) Handler() http.Handler { return s.handler(nil) }

func (s *Server) handler(middleware []func(http.Handler) http.Handler) http.Handler {
	cfg := s.cfg
	policy := func(c config.CORS) handlers.CORSPolicy {
		return handlers.CORSPolicy{Origins: c.AllowOrigin, Methods: c.AllowMethods, Headers: c.AllowHeaders, Credentials: c.AllowCredentials}
	}
	pluginCORS := make(map[string]handlers.CORSPolicy)
	for name, p := range cfg.PluginConfigs {
		if len(p.CORS.AllowOrigin) > 0 {
			pc := policy(cfg.CORS) // unset fields fall back to the global ones
			pc.Origins = p.CORS.AllowOrigin
			if len(p.CORS.AllowMethods) > 0 {
				pc.Methods = p.CORS.AllowMethods
			}
			if len(p.CORS.AllowHeaders) > 0 {
				pc.Headers = p.CORS.AllowHeaders
			}
			pluginCORS[name] = pc
		}
	}
	h := &handlers.Server{
		Plugins:        s.plugins(),
		Log:            s.log,
		Debug:          cfg.Debug,
		Ready:          s.ready,
		Health:         s.health,
		Generation:     s.loader.ListGeneration,
		Middleware:     middleware,
		Configured:     slices.Collect(maps.Keys(cfg.PluginConfigs)),
		Auth:           s.auth,
		AuthProbes:     cfg.Auth.Probes,
		AuthMetrics:    cfg.Auth.Metrics,
		TrustedProxies: cfg.HTTP.TrustedProxyPrefixes(),
		CORS:           policy(cfg.CORS),
		PluginCORS:     pluginCORS,

		Tasks:    s.tasks,
		Profiles: cfg.Admin.PProf,

		SecurityHeaders: cfg.HTTP.SecurityHeaders,
		CSP:             cfg.HTTP.CSP,
		Gzip:            cfg.HTTP.Gzip,
		GzipMinBytes:    cfg.HTTP.GzipMinBytes,
		MaxBodyBytes:    cfg.HTTP.MaxBodyBytes,
		Setup: func(name string) handlers.PluginSetup {
			p := cfg.Plugin(name)
			return handlers.PluginSetup{
				Settings: p.Settings, Secrets: cfg.Secrets(name), Timeout: p.Timeout,
				MaxConcurrency: p.MaxConcurrency, Methods: p.Methods, MaxBodyBytes: p.MaxBodyBytes,
				Bus: s.bus.Client(name, false), Tasks: s.tasks.For(name),
			}
		},
	}
	if cfg.Metrics.Enabled {
		h.Metrics, h.MetricsPath = s.metrics, cfg.Metrics.Path
	}
	if cfg.Bus.Events {
		h.Events = s.streams.Handler("bus", busEvent)
	}
	s.mountAdmin(h)
	return h.Handler()
}

func (s *Server) ready(ctx context.Context) handlers.Readiness {
	rd := handlers.Readiness{WarmUp: s.warmup.Load().(string)}
	switch state(s.state.Load()) {
	case starting:
		rd.Status = "starting"
	case draining:
		rd.Status = "shutting down"
	default:
		rd.Ready, rd.Status = true, "ready"
	}
	return rd
}

// ListenAndServe listens on the configured address and serves until ctx
// ends. It releases the server's resources (Close) whether or not it
// could listen.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr())
	if err != nil {
		_ = s.Close()
		return fmt.Errorf("http.host/http.port: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends. Requests that arrive while the
// middleware plugins load wait at the gate (lifecycle.
// startupRequestPauseTimeout). When ctx ends, /readyz fails at once, the
// server keeps serving for lifecycle.serverShutdownDelay so load
// balancers drain it, then stops taking connections and lets in-flight
// requests finish for up to lifecycle.serverShutdownTimeout; then it
// stops background work and releases the rest (Close): running tasks get
// the same grace, then the plugins' Close hooks run. Serve always calls
// Close before it returns; it returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer s.Close()
	hc := s.cfg.HTTP
	gate := handlers.NewGate(s.cfg.Lifecycle.StartupRequestPauseTimeout)
	srv := &http.Server{
		Handler:           gate,
		ReadHeaderTimeout: hc.ReadHeaderTimeout,
		ReadTimeout:       hc.ReadTimeout,
		WriteTimeout:      hc.WriteTimeout,
		IdleTimeout:       hc.IdleTimeout,
		MaxHeaderBytes:    hc.MaxHeaderBytes,
		ErrorLog:          stdlog.New(s.log.With().Str("component", "http").Logger(), "", 0),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	srv.SetKeepAlivesEnabled(hc.KeepAlive)
	srv.RegisterOnShutdown(sync.OnceFunc(func() { close(s.closing) })) // Close shuts down again
	serve := func() error { return srv.Serve(ln) }
	if s.certs != nil {
		srv.TLSConfig = &tls.Config{GetCertificate: s.certs.get, MinVersion: tls.VersionTLS12}
		serve = func() error { return srv.ServeTLS(ln, "", "") }
	}
	var serveErr error // set before served is closed
	served := make(chan struct{})
	go func() {
		defer close(served)
		serveErr = serve()
	}()
	s.onClose("http server", func(ctx context.Context) error {
		// After the drain below this finds nothing left to do.
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-served
		return nil
	})
	// Background work stops first, before anything it uses is released.
	bgCtx, stopBackground := context.WithCancel(ctx)
	var background sync.WaitGroup
	s.onClose("background work", func(ctx context.Context) error {
		stopBackground()
		done := make(chan struct{})
		go func() { background.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("background work did not stop: %w", ctx.Err())
		}
	})
	if s.certs != nil {
		background.Go(func() { s.certs.watch(bgCtx) })
	}
	s.log.Info().Str("addr", ln.Addr().String()).Bool("tls", s.certs != nil).Msg("listening")
	s.events.emit("plugind.server.starting", serverEvent{Addr: ln.Addr().String()})

	h, err := s.start(ctx)
	if err != nil {
		s.state.Store(int32(draining))
		_ = srv.Close() // nobody was let in: nothing to drain
		return err
	}
	gate.Open(h)
	s.events.then(s.bus.StopRetaining) // after the start-up events queued so far
	s.state.Store(int32(serving))
	s.log.Info().Msg("ready")
	background.Go(func() { s.background(bgCtx) })

	select {
	case <-served:
		return fmt.Errorf("serve: %w", serveErr)
	case <-ctx.Done():
	}
	s.state.Store(int32(draining))
	s.events.emit("plugind.server.stopping", serverEvent{Addr: ln.Addr().String()})
	lc := s.cfg.Lifecycle
	s.log.Info().Dur("delay", lc.ServerShutdownDelay).Dur("timeout", lc.ServerShutdownTimeout).Msg("shutting down")
	if lc.ServerShutdownDelay > 0 {
		time.Sleep(lc.ServerShutdownDelay) // still serving, /readyz failing: let balancers notice
	}
	sctx, cancel := context.WithTimeout(context.Background(), lc.ServerShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn().Err(err).Msg("in-flight requests outlived the shutdown timeout; closing their connections")
		_ = srv.Close()
	}
	_ = s.Close()
	<-served
	if !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	s.log.Info().Msg("stopped")
	return nil
}
