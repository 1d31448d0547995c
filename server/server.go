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
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/bus"
	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/handlers"
	"github.com/plugind/plugind/isolate"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/metrics"
	"github.com/plugind/plugind/tasks"
)

// state is where the server is in its life, for /readyz.
type state int32

const (
	starting state = iota
	serving
	draining
)

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
	events  *eventQueue    // server events on the bus
	tasks   *tasks.Manager // plugins' background tasks
	closing chan struct{}  // closed when shutdown begins
	state   atomic.Int32   // a state
	warmup  atomic.Value   // string: "off", "running", "done", "failed"
	admin   adminState     // the operator page's records

	isolated *isolate.Manager // plugins in processes of their own
}

// NewLoader makes the loader cfg describes, for the server and for the
// command line's build and list. extend, if not nil, adds to the loader's options what only a serving
// server has (events, the bus, tasks).
func NewLoader(cfg config.Config, log zerolog.Logger, extend func(*loader.Options)) (*loader.Loader, loader.HostBuild, error) {
	host, err := loader.HostBuildInfo()
	if err != nil {
		return nil, host, err
	}
	var check loader.LoadChecker
	if cfg.Plugins.LoadCheckTimeout > 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, host, fmt.Errorf("finding the server binary for load checks: %w", err)
		}
		check = loader.ExecLoadCheck(exe, cfg.Plugins.LoadCheckTimeout)
	}
	opts := loader.Options{
		SrcDir:           cfg.SrcDir(),
		CacheDir:         cfg.Plugins.CacheDir,
		ModuleDir:        cfg.Plugins.ModuleDir,
		Go:               cfg.Plugins.Go,
		BuildTimeout:     cfg.Plugins.BuildTimeout,
		BuildWait:        cfg.Plugins.BuildWait,
		Reload:           cfg.Plugins.Reload == config.ReloadOnChange,
		MaxLoadedBytes:   cfg.Plugins.MemoryBudgetMB << 20,
		RefuseOverBudget: cfg.Plugins.RefuseOverBudget,
		LegacyWait:       cfg.Plugins.LegacyWait,
		Settings: func(name string) (map[string]any, map[string]string) {
			return cfg.Plugin(name).Settings, cfg.Secrets(name)
		},
		LoadCheck: check,
		Prebuilt:  cfg.Plugins.Build == config.BuildOff,
		Host:      &host,
		Log:       log,
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
func New(ctx context.Context, cfg config.Config, log zerolog.Logger, opts ...Option) (*Server, error) {
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
	s.warmup.Store("off")
	s.metrics = metrics.New(func() []loader.Stat { return s.loader.Stats() })
	s.bus = bus.New(func(m bus.Message) {
		s.metrics.BusMessage(string(m.Kind), m.Name, m.Delivered, m.Err != nil)
		if cfg.Bus.Events || cfg.Admin.Enabled {
			s.tap.Observe(m)
		}
	})
	s.events = newEventQueue(s.bus, log)
	s.newAdminState()
	if err := os.MkdirAll(cfg.Tasks.Dir, 0o700); err != nil && cfg.Tasks.Store != "postgres" {
		return nil, fmt.Errorf("tasks.dir: %w", err)
	}
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
	l, _, err := NewLoader(cfg, log, func(o *loader.Options) {
		o.Notify = s.pluginEvent
		if so.onEvent != nil {
			o.Notify = func(ev loader.Event) { s.pluginEvent(ev); so.onEvent(ev) }
		}
		o.Bus = s.bus
		o.Tasks = tm.For
	})
	if err != nil {
		tm.Shutdown(ctx)
		return nil, err
	}
	s.loader = l
	if s.isolated, err = newIsolated(cfg, l, log); err != nil {
		tm.Shutdown(ctx)
		return nil, err
	}
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
		_ = l.Close(ctx)
		_ = tm.Shutdown(ctx)
		s.events.close()
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
	if cfg.Plugins.Reload == config.ReloadOnChange && loader.Supported {
		if err := l.Watch(); err != nil {
			log.Warn().Err(err).Msg("hot reload is off: cannot watch plugin sources")
		} else {
			log.Info().Str("dir", cfg.SrcDir()).Msg("hot reload on: watching plugin sources")
		}
	}
	return s, nil
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
		Plugins:     s.plugins(),
		Log:         s.log,
		Debug:       cfg.Debug,
		Ready:       s.ready,
		Health:      s.health,
		Generation:  s.loader.ListGeneration,
		Middleware:  middleware,
		Configured:  slices.Collect(maps.Keys(cfg.PluginConfigs)),
		Auth:        s.auth,
		AuthProbes:  cfg.Auth.Probes,
		AuthMetrics: cfg.Auth.Metrics,
		CORS:        policy(cfg.CORS),
		PluginCORS:  pluginCORS,

		Tasks: s.tasks,

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
		h.Events, h.Closing = s.tap, s.closing
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
// ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr())
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends. Requests that arrive while the
// middleware plugins load wait at the gate (lifecycle.
// startupRequestPauseTimeout). When ctx ends, /readyz fails at once, the
// server keeps serving for lifecycle.serverShutdownDelay so load
// balancers drain it, then stops taking connections and lets in-flight
// requests finish for up to lifecycle.serverShutdownTimeout, then runs
// the plugins' Close hooks. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
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
	srv.RegisterOnShutdown(func() { close(s.closing) })
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	served := make(chan error, 1)
	if s.certs != nil {
		srv.TLSConfig = &tls.Config{GetCertificate: s.certs.get, MinVersion: tls.VersionTLS12}
		go s.certs.watch(bgCtx)
		go func() { served <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { served <- srv.Serve(ln) }()
	}
	s.log.Info().Str("addr", ln.Addr().String()).Bool("tls", s.certs != nil).Msg("listening")
	s.events.emit("plugind.server.starting", serverEvent{Addr: ln.Addr().String()})

	h, err := s.start(ctx)
	if err != nil {
		s.state.Store(int32(draining))
		_ = srv.Close()
		<-served
		cctx, cancel := context.WithTimeout(context.Background(), s.cfg.Lifecycle.ServerShutdownTimeout)
		defer cancel()
		_ = s.loader.Close(cctx)
		s.closeIsolated(cctx)
		_ = s.tasks.Shutdown(cctx)
		s.events.close()
		return err
	}
	gate.Open(h)
	s.state.Store(int32(serving))
	s.log.Info().Msg("ready")
	go s.background(bgCtx)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
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
	// Tasks get the same grace as requests, then are recorded interrupted.
	tctx, cancelTasks := context.WithTimeout(context.Background(), lc.ServerShutdownTimeout)
	defer cancelTasks()
	if err := s.tasks.Shutdown(tctx); err != nil {
		s.log.Warn().Err(err).Msg("closing the task store")
	}
	cctx, cancelClose := context.WithTimeout(context.Background(), lc.ServerShutdownTimeout)
	defer cancelClose()
	if err := s.loader.Close(cctx); err != nil {
		s.log.Warn().Err(err).Msg("plugin Close hooks failed")
	}
	s.closeIsolated(cctx)
	s.events.close()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	s.log.Info().Msg("stopped")
	return nil
}
