// Package server wires configuration, the plugin loader and the HTTP
// handlers into a running http.Server and owns its lifecycle: start-up
// checks, readiness, and graceful shutdown when its context ends.
package server

import (
	"context"
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

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/handlers"
	"github.com/plugind/plugind/loader"
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
	cfg        config.Config
	log        zerolog.Logger
	loader     *loader.Loader
	middleware []func(http.Handler) http.Handler
	state      atomic.Int32 // a state
	warmup     atomic.Value // string: "off", "running", "done", "failed"
}

// NewLoader makes the loader cfg describes, for the server and for the
// command line's build and list.
func NewLoader(cfg config.Config, log zerolog.Logger) (*loader.Loader, loader.HostBuild, error) {
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
	l, err := loader.New(loader.Options{
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
		Host:      &host,
		Log:       log,
	})
	return l, host, err
}

// New checks the environment, discovers plugins and prepares the server.
// It logs one line per discovered plugin, and what is missing to build
// plugins here, if anything. The binary must call
// loader.RunLoadCheckIfAsked (or handle loader.LoadCheckCommand) first
// thing, since the server runs itself to check new plugins.
func New(ctx context.Context, cfg config.Config, log zerolog.Logger) (*Server, error) {
	if cfg.File != "" {
		log.Info().Str("file", cfg.File).Msg("configuration read")
	}
	if len(cfg.Unknown) > 0 {
		log.Warn().Strs("keys", cfg.Unknown).Msg("configuration keys not used by plugind are ignored")
	}
	l, host, err := NewLoader(cfg, log)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, loader: l}
	s.warmup.Store("off")
	for _, p := range loader.CheckToolchain(ctx, cfg.Plugins.Go, host) {
		log.Warn().Str("problem", p).Msg("plugins cannot be built or loaded here")
	}
	plugins, skipped, err := l.Discover()
	if err != nil {
		log.Warn().Err(err).Str("dir", cfg.SrcDir()).Msg("plugin source directory unreadable")
	}
	for _, p := range plugins {
		log.Info().Str("plugin", p.Name).Str("kind", string(p.Kind)).Msg("plugin registered")
	}
	for _, name := range skipped {
		log.Warn().Str("entry", name).Msg("plugin source skipped: its name is not a valid plugin name")
	}
	if removed, freed, err := l.Prune(cfg.Plugins.CacheMaxMB << 20); err != nil {
		log.Warn().Err(err).Msg("pruning the plugin cache")
	} else if removed > 0 {
		log.Info().Int("artifacts", removed).Int64("bytes", freed).Msg("plugin cache pruned")
	}
	for _, m := range cfg.Middleware {
		mw, err := l.Middleware(ctx, m.File, m.Func)
		if err != nil {
			l.Close(ctx)
			return nil, fmt.Errorf("middleware %s/%s (pluginmiddlewarelist): %w", m.File, m.Func, err)
		}
		s.middleware = append(s.middleware, mw)
		log.Info().Str("plugin", m.File).Str("func", m.Func).Msg("middleware loaded")
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

// background warms the build cache, then prebuilds plugins if asked.
func (s *Server) background(ctx context.Context) {
	if !loader.Supported {
		return
	}
	if s.cfg.Plugins.WarmUp {
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

// Handler is the server's HTTP handler, for tests that bring their own
// listener or server.
func (s *Server) Handler() http.Handler {
	h := &handlers.Server{
		Plugins:    s.loader,
		Log:        s.log,
		Debug:      s.cfg.Debug,
		Ready:      s.ready,
		Middleware: s.middleware,
		Configured: slices.Collect(maps.Keys(s.cfg.PluginConfigs)),
		Setup: func(name string) handlers.PluginSetup {
			p := s.cfg.Plugin(name)
			return handlers.PluginSetup{
				Settings: p.Settings, Secrets: s.cfg.Secrets(name), Timeout: p.Timeout,
				MaxConcurrency: p.MaxConcurrency, Methods: p.Methods, MaxBodyBytes: p.MaxBodyBytes,
			}
		},
	}
	return h.Handler()
}

func (s *Server) ready(ctx context.Context) handlers.Readiness {
	rd := handlers.Readiness{WarmUp: s.warmup.Load().(string), Plugins: s.loader.Health(ctx, 2*time.Second)}
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

// Serve serves on ln until ctx ends, then stops taking connections, turns
// /readyz failing and lets in-flight requests finish for up to
// lifecycle.serverShutdownTimeout. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          stdlog.New(s.log.With().Str("component", "http").Logger(), "", 0),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	go s.background(bgCtx)
	s.state.Store(int32(serving))
	s.log.Info().Str("addr", ln.Addr().String()).Msg("listening")

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.state.Store(int32(draining))
	timeout := s.cfg.Lifecycle.ServerShutdownTimeout
	s.log.Info().Dur("timeout", timeout).Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn().Err(err).Msg("in-flight requests outlived the shutdown timeout; closing their connections")
		_ = srv.Close()
	}
	cctx, cancelClose := context.WithTimeout(context.Background(), timeout)
	defer cancelClose()
	if err := s.loader.Close(cctx); err != nil {
		s.log.Warn().Err(err).Msg("plugin Close hooks failed")
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	s.log.Info().Msg("stopped")
	return nil
}
