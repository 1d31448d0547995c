package server

import (
	"context"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/handlers"
	"github.com/plugind/plugind/isolate"
	"github.com/plugind/plugind/loader"
)

// newIsolated makes the manager of the plugins that run in processes of
// their own (plugins.isolation, plugin.<name>.isolation), as NewIsolated
// does. In prebuilt mode it logs, at start, each plugin that runs in a
// process from the start and has no program plugind build made for its
// current source: its calls answer 503 naming that command.
func newIsolated(cfg config.Config, l *loader.Loader, log zerolog.Logger) (*isolate.Manager, error) {
	m, err := NewIsolated(cfg, l.Pipeline(), log)
	if err != nil || m == nil || !l.Prebuilt() {
		return m, err
	}
	plugins, _, err := l.Discover()
	if err != nil {
		return m, nil // New logs an unreadable source directory
	}
	iso := isolationOf(cfg)
	for _, p := range plugins {
		if p.Kind == loader.KindPrebuilt || !iso.isolated(p.Name) {
			continue
		}
		if err := m.Built(p.Name); err != nil {
			log.Error().Str("plugin", p.Name).Err(err).Msg("isolated plugin is not built; its calls fail until plugind build builds it")
		}
	}
	return m, nil
}

// NewIsolated makes the manager of the plugins that run in processes of
// their own, built in p's module and cached beside its artifacts:
// for the server, and for plugind build, which builds their programs
// with it (isolate.Manager.Build) so that a server with the same
// configuration finds them. Nothing starts until such a plugin is
// called. There is none (nil) when every plugin runs in-process.
//
// In prebuilt mode the manager runs the programs plugind build made and
// never builds one (isolate.Options.Prebuilt).
func NewIsolated(cfg config.Config, p *build.Pipeline, log zerolog.Logger) (*isolate.Manager, error) {
	if !isolationOf(cfg).any() {
		return nil, nil // every plugin in-process: no manager
	}
	var tags string
	for _, f := range p.Host().Flags {
		if t, ok := strings.CutPrefix(f, "-tags="); ok {
			tags = t
		}
	}
	return isolate.New(isolate.Options{
		Find:         isolate.PipelineFinder(p),
		ModuleDir:    p.ModuleDir(),
		CacheDir:     cfg.Plugins.CacheDir,
		Prebuilt:     p.Prebuilt(),
		Go:           cfg.Plugins.Go,
		Tags:         tags,
		Modules:      p.ProcessModule,
		SourceHash:   p.SourceHash,
		Env:          p.GoEnv(),
		BuildTimeout: cfg.Plugins.BuildTimeout,
		BuildWait:    cfg.Plugins.BuildWait,
		Settings: func(name string) (map[string]any, map[string]string) {
			return cfg.Plugin(name).Settings, cfg.Secrets(name)
		},
		Processes:  func(name string) int { return cfg.Plugin(name).Processes },
		LegacyWait: cfg.Plugins.LegacyWait,
		Log:        log,
	})
}

// sourceChanged hands a change the loader's watcher saw (plugin name's
// source, or the go.mod that declares its requirements) to the manager
// of isolated plugins if name runs in a process: it is rebuilt and its
// processes replaced. In-process plugins are the loader's to reload. The
// loader's goroutine must not wait for a build, so the reload goes on in
// the background; the manager's Close ends it.
func (s *Server) sourceChanged(name string) {
	if s.isolated == nil || !s.isolated.Runs(name) {
		return
	}
	go func() { _ = s.isolated.Reload(context.Background(), name) }() // Reload logs its failure
}

// isolation is every plugin's isolation mode, read from the
// configuration once: the router asks for each request.
type isolation struct {
	def   string            // plugins.isolation
	named map[string]string // plugin.<name>.isolation, where set
}

func isolationOf(cfg config.Config) isolation {
	iso := isolation{def: cfg.Plugins.Isolation, named: make(map[string]string)}
	for name := range cfg.PluginConfigs {
		if mode := cfg.Plugin(name).Isolation; mode != "" {
			iso.named[name] = mode
		}
	}
	return iso
}

// of is plugin name's mode.
func (iso isolation) of(name string) string {
	if mode, ok := iso.named[name]; ok {
		return mode
	}
	return iso.def
}

// any reports whether some plugin may run in a process.
func (iso isolation) any() bool {
	inProcess := func(mode string) bool { return mode == "" || mode == config.IsolationInProcess }
	if !inProcess(iso.def) {
		return true
	}
	for _, mode := range iso.named {
		if !inProcess(mode) {
			return true
		}
	}
	return false
}

// isolated reports whether plugin name runs in a process from the start:
// configured so, or "auto" where .so plugins cannot load (no cgo,
// another platform). An "auto" plugin whose dependencies keep it from
// loading in-process moves to a process when that shows (see
// isolate.RouteAuto).
func (iso isolation) isolated(name string) bool {
	switch iso.of(name) {
	case config.IsolationProcess:
		return true
	case config.IsolationAuto:
		return !loader.Supported
	}
	return false
}

// auto reports whether plugin name is in "auto" isolation.
func (iso isolation) auto(name string) bool { return iso.of(name) == config.IsolationAuto }

// plugins resolves isolated plugins through the manager, the others
// in-process.
func (s *Server) plugins() handlers.Plugins {
	if s.isolated == nil {
		return handlers.Loader(s.loader)
	}
	iso := isolationOf(s.cfg)
	return isolate.RouteAuto(handlers.Loader(s.loader), s.isolated, iso.isolated, iso.auto, s.log)
}

// health is every plugin's Health hook result, in-process and isolated
// (an isolated plugin down after a crash loop reports why).
func (s *Server) health(ctx context.Context) map[string]string {
	if s.isolated == nil {
		return s.loader.Health(ctx, time.Second)
	}
	return isolate.Health(s.loader.Health(ctx, time.Second), s.isolated.Health(ctx, time.Second))
}

// closeIsolated stops the isolated plugins' processes, bounded by ctx.
func (s *Server) closeIsolated(ctx context.Context) {
	if s.isolated == nil {
		return
	}
	if err := s.isolated.Close(ctx); err != nil {
		s.log.Warn().Err(err).Msg("stopping isolated plugin processes")
	}
}
