// Package isolate runs plugins in processes of their own. A plugin's
// source, unchanged, is built as an executable with a generated main
// (package child serves its handlers over HTTP on a Unix socket); the
// Manager starts it with an allow-listed environment, waits until it is
// healthy, reverse-proxies calls to it, forwards its output to the log,
// restarts it with exponential backoff when it crashes, leaves it down
// after a crash loop, and replaces it on reload without dropping calls.
//
// Route plugs a Manager into the HTTP layer beside the in-process loader:
// isolated plugins get the same limits, errors and sdk as in-process
// ones, and a crash in one ends only its own process.
package isolate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/loader"
)

// Options configure a Manager.
type Options struct {
	// Find returns a plugin's source (see SourceFinder).
	Find func(name string) (loader.Source, error)
	// ModuleDir is the module programs are built in: the loader's
	// (loader.Loader.ModuleDir), so that sdk and the plugin's imports
	// resolve as for in-process builds. Not needed in prebuilt mode.
	ModuleDir string
	// CacheDir holds built programs, under CacheDir/isolate.
	CacheDir string
	// Prebuilt (plugins.build = "off") runs only the programs Build
	// recorded for the plugins' current sources, and never the go
	// command; a plugin without one is loader.ErrNotBuilt. Nothing is
	// written under CacheDir, which may be read-only.
	Prebuilt bool
	Go       string // go command; "" means "go"
	// Tags are the server's build tags: they select a folder's files.
	Tags string
	// Modules prepares the module a plugin that declares requirements
	// (lib/go.mod, a folder's go.mod) is built in and returns its go.mod
	// for -modfile, "" for a plugin that declares none: the build
	// pipeline's ProcessModule. nil: programs build in ModuleDir alone.
	Modules func(ctx context.Context, src loader.Source) (string, error)
	// SourceHash digests what a plugin's program is built from: its
	// files and the packages of the module it declares its requirements
	// in that it imports (a folder plugin's own lib/src/shop/cart),
	// which Modules has the program compile from the plugin's directory:
	// the build pipeline's SourceHash. A program's key and its prebuilt
	// manifest record (see Build) cover it, so an edit of such a package
	// is a new program. Required with Modules; nil: the files alone.
	SourceHash func(src loader.Source) (string, error)
	// Env is the go command's environment (GOPROXY and the like): the
	// build pipeline's (build.Pipeline.GoEnv), whose GOFLAGS keeps only
	// what plugin builds take; nil: the process's, without its GOFLAGS.
	Env          []string
	BuildTimeout time.Duration // bound on one build; 0: 5 minutes
	// BuildWait bounds how long a call waits for a build and a start
	// before it is answered ErrBuilding; 0: one minute.
	BuildWait time.Duration
	// Settings returns a plugin's settings and secrets; nil: none.
	Settings func(name string) (map[string]any, map[string]string)
	// Processes returns how many children serve a plugin (at least 1).
	Processes func(name string) int
	// StartTimeout bounds exec to healthy, Init included; 0: 30 s.
	StartTimeout time.Duration
	// HookTimeout bounds Init and Close in the child; 0: 30 s.
	HookTimeout time.Duration
	// LegacyWait bounds how long a prestd-ABI call waits in a child for
	// the call before it (ErrBusy); 0: 30 s, as plugins.legacywait.
	LegacyWait time.Duration
	// Grace is how long a retired process has to finish its calls, and
	// then to exit after SIGTERM, before SIGKILL; 0: 10 s.
	Grace time.Duration
	// MinBackoff and MaxBackoff bound the wait before a restart, doubling
	// from one to the other; 0: 100 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// CrashLoop crashes within CrashWindow leave a plugin down until its
	// next reload; 0: 5 within a minute.
	CrashLoop   int
	CrashWindow time.Duration
	// RetryFailed is how long a failed build or start is answered from
	// memory before the next call tries again; 0: 5 s.
	RetryFailed time.Duration
	Log         zerolog.Logger
}

// SourceFinder finds one plugin's source as l's pipeline does, so that
// files are selected (tests out, build constraints applied) as for the
// in-process loader: two stats, not a listing of the source directory,
// since it runs for every call to a plugin not yet known.
func SourceFinder(l *loader.Loader) func(name string) (loader.Source, error) {
	return PipelineFinder(l.Pipeline())
}

// PipelineFinder is SourceFinder for a build pipeline without a loader
// (plugind build).
func PipelineFinder(p *build.Pipeline) func(name string) (loader.Source, error) {
	find := p.Find
	return func(name string) (loader.Source, error) {
		if !loader.ValidName(name) {
			return loader.Source{}, &loader.Error{Kind: loader.ErrBadName, Plugin: name, Msg: fmt.Sprintf("invalid plugin name %q", name)}
		}
		return find(name)
	}
}

// Manager runs isolated plugins. It is safe for concurrent use.
type Manager struct {
	opts    Options
	log     zerolog.Logger
	builder *builder
	ctx     context.Context // ended by Close
	cancel  context.CancelFunc

	mu      sync.Mutex
	plugins map[string]*plugin
	closed  bool
}

// New returns a Manager; nothing starts until a plugin is called.
func New(opts Options) (*Manager, error) {
	if opts.Find == nil || (opts.ModuleDir == "" && !opts.Prebuilt) || opts.CacheDir == "" {
		return nil, errors.New("isolate: Find, ModuleDir and CacheDir are required")
	}
	if opts.Modules != nil && opts.SourceHash == nil {
		// Programs would compile packages their keys do not cover.
		return nil, errors.New("isolate: SourceHash is required with Modules")
	}
	defaults := []struct {
		d   *time.Duration
		def time.Duration
	}{
		{&opts.BuildTimeout, 5 * time.Minute}, {&opts.BuildWait, time.Minute}, {&opts.StartTimeout, 30 * time.Second},
		{&opts.HookTimeout, 30 * time.Second}, {&opts.LegacyWait, 30 * time.Second}, {&opts.Grace, 10 * time.Second}, {&opts.MinBackoff, 100 * time.Millisecond},
		{&opts.MaxBackoff, 30 * time.Second}, {&opts.CrashWindow, time.Minute}, {&opts.RetryFailed, 5 * time.Second},
	}
	for _, d := range defaults {
		if *d.d <= 0 {
			*d.d = d.def
		}
	}
	if opts.CrashLoop <= 0 {
		opts.CrashLoop = 5
	}
	if opts.Go == "" {
		opts.Go = "go"
	}
	if opts.Settings == nil {
		opts.Settings = func(string) (map[string]any, map[string]string) { return nil, nil }
	}
	if opts.Processes == nil {
		opts.Processes = func(string) int { return 1 }
	}
	dir, err := filepath.Abs(filepath.Join(opts.CacheDir, "isolate"))
	if err != nil {
		return nil, fmt.Errorf("isolate: cache directory: %w", err)
	}
	if !opts.Prebuilt { // prebuilt: the cache is read-only
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("isolate: cache directory: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		opts: opts, log: opts.Log, ctx: ctx, cancel: cancel,
		builder: &builder{goCmd: opts.Go, moduleDir: opts.ModuleDir, dir: dir, tags: opts.Tags, modules: opts.Modules, srcHash: opts.SourceHash, env: opts.Env,
			prebuilt: opts.Prebuilt, timeout: opts.BuildTimeout, slot: make(chan struct{}, 1)},
		plugins: make(map[string]*plugin),
	}, nil
}

// BuildResult is the outcome of Build for one plugin.
type BuildResult struct {
	Key      string        // the program's content address
	Duration time.Duration // 0: the program was cached
}

// Build makes sure plugin name's program is in the cache, building it as
// its first call would, and records it for a Manager in prebuilt mode
// (Options.Prebuilt), which runs only what Build recorded: plugind build
// runs it for every plugin a server may run in a process. It starts
// nothing. In prebuilt mode it builds nothing either, and fails.
func (m *Manager) Build(ctx context.Context, name string) (BuildResult, error) {
	if m.opts.Prebuilt {
		return BuildResult{}, &loader.Error{Kind: loader.ErrBuild, Plugin: name, Msg: fmt.Sprintf("plugin %q: plugins.build is off: this process does not build plugins", name)}
	}
	src, err := m.opts.Find(name)
	if err != nil {
		return BuildResult{}, err
	}
	start := time.Now()
	prog, compiled, err := m.builder.build(ctx, src)
	if err != nil {
		return BuildResult{}, err
	}
	res := BuildResult{Key: prog.key}
	if compiled {
		res.Duration = time.Since(start)
	}
	if err := m.builder.record(src, prog); err != nil {
		return res, err
	}
	return res, nil
}

// Built reports whether plugin name's current source can run in a
// process without a build: in prebuilt mode, nil if Build recorded its
// program, else why not (loader.ErrNotBuilt, naming the plugind build
// command that makes it); otherwise always nil, since a call builds it.
// It reads the manifest and the sources, and starts nothing.
func (m *Manager) Built(name string) error {
	if !m.opts.Prebuilt {
		return nil
	}
	src, err := m.opts.Find(name)
	if err != nil {
		return err
	}
	_, _, err = m.builder.build(m.ctx, src)
	return err
}

// Resolve returns the handler of method+fn+"Handler" in plugin name,
// building and starting the plugin on its first call.
func (m *Manager) Resolve(ctx context.Context, name, fn, method string) (*Handler, error) {
	if err := loader.CheckNames(name, fn); err != nil {
		return nil, err
	}
	p, err := m.plugin(name)
	if err != nil {
		return nil, err
	}
	g, err := p.serving(ctx)
	if err != nil {
		return nil, err
	}
	if method == "HEAD" {
		method = "GET"
	}
	symbol := method + fn + "Handler"
	info, ok := g.prog.model.symbol(symbol)
	if !ok || !loader.ValidMethod(method) {
		allowed := loader.AllowedMethods(func(m string) bool {
			_, ok := g.prog.model.symbol(m + fn + "Handler")
			return ok
		})
		return nil, loader.NoHandlerError(name, fn, method, allowed)
	}
	if info.ABI == loader.ABIUnsupported {
		return nil, &loader.Error{Kind: loader.ErrSignature, Plugin: name,
			Msg: fmt.Sprintf("plugin %q: %s has type %s; want func() string, func() (string, int) or func(http.ResponseWriter, *http.Request)", name, symbol, info.Signature)}
	}
	return p.handler(symbol, info.ABI), nil
}

// plugin returns name's record, made on first use.
func (m *Manager) plugin(name string) (*plugin, error) {
	if p, err := m.existing(name); p != nil || err != nil {
		return p, err
	}
	// Records are made only for plugins that exist, so that calls for
	// random names cannot grow the map. Find reads the disk: not under mu.
	if _, err := m.opts.Find(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed(name)
	}
	p := m.plugins[name]
	if p == nil {
		p = &plugin{m: m, name: name, log: m.log.With().Str("plugin", name).Logger(), handlers: make(map[string]*Handler)}
		m.plugins[name] = p
	}
	return p, nil
}

// existing returns name's record if it has one.
func (m *Manager) existing(name string) (*plugin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed(name)
	}
	return m.plugins[name], nil
}

func errClosed(name string) error {
	return &loader.Error{Kind: loader.ErrRestarting, Plugin: name, Msg: fmt.Sprintf("plugin %q: the server is shutting down", name)}
}

// Reload builds plugin name's source again and, if it changed, starts
// the new program, waits until it is healthy, switches calls to it and
// drains and stops the old processes. A plugin left down by a crash loop
// starts again. A plugin never called is left alone (see Runs). ctx
// bounds the reload, and so does Close. The server calls it when the
// loader's watcher reports that the plugin's source or requirements
// changed (loader.EventSourceChanged).
func (m *Manager) Reload(ctx context.Context, name string) error {
	m.mu.Lock()
	p, closed := m.plugins[name], m.closed
	m.mu.Unlock()
	if closed {
		return errClosed(name)
	}
	if p == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(m.ctx, cancel)()
	return p.reload(ctx)
}

// Runs reports whether plugin name runs in a process of m's: it has been
// called through m (Route sends it there), so Reload concerns it.
func (m *Manager) Runs(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.plugins[name] != nil
}

// Close stops every plugin process: calls in flight complete (bounded by
// the grace), then each child gets SIGTERM and runs its Close hook.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	ps := make([]*plugin, 0, len(m.plugins))
	for _, p := range m.plugins {
		ps = append(ps, p)
	}
	m.mu.Unlock()
	m.cancel()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() { p.shutdown() })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("isolate: stopping plugin processes: %w", ctx.Err())
	}
}

// Health runs the Health hook of every serving isolated plugin that has
// one, each bounded by timeout; a plugin left down reports why.
func (m *Manager) Health(ctx context.Context, timeout time.Duration) map[string]string {
	m.mu.Lock()
	ps := make([]*plugin, 0, len(m.plugins))
	for _, p := range m.plugins {
		ps = append(ps, p)
	}
	m.mu.Unlock()
	var mu sync.Mutex
	out := make(map[string]string)
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			status := p.health(ctx, timeout)
			if status == "" {
				return
			}
			mu.Lock()
			out[p.name] = status
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// Info describes plugin name for listings, or false if it was never
// called. Its State is "failed" while it is down, with the crash reason
// in LastError.
func (m *Manager) Info(name string) (loader.Info, bool) {
	m.mu.Lock()
	p := m.plugins[name]
	m.mu.Unlock()
	if p == nil {
		return loader.Info{}, false
	}
	return p.info(), true
}

// Stat is a plugin's processes, for tests and benchmarks.
type Stat struct {
	Program       string // the serving executable
	PIDs          []int
	ExecToHealthy []time.Duration
	InFlight      int // calls in the serving processes
	Crashes       int
	Down          bool
}

// Stat reports plugin name's serving processes.
func (m *Manager) Stat(name string) Stat {
	m.mu.Lock()
	p := m.plugins[name]
	m.mu.Unlock()
	if p == nil {
		return Stat{}
	}
	p.mu.Lock()
	st := Stat{Crashes: p.crashTotal, Down: p.down != ""}
	g := p.gen
	p.mu.Unlock()
	if g != nil {
		st.Program = g.prog.exe
		for i := range g.slots {
			if pr := g.slots[i].Load(); pr != nil {
				st.PIDs = append(st.PIDs, pr.pid)
				st.ExecToHealthy = append(st.ExecToHealthy, pr.healthy)
				st.InFlight += pr.load()
			}
		}
	}
	return st
}
