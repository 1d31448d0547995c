package loader

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
)

// Options configure a Loader.
type Options struct {
	SrcDir       string        // plugin sources
	CacheDir     string        // built artifacts
	ModuleDir    string        // module to build in; "" finds the server's own
	Go           string        // go command; "" means "go"
	BuildTimeout time.Duration // bound on one build; 0 means 5 minutes
	// Host is how the server was built; nil reads the running binary's
	// build information. Tests set it to build plugins for another host.
	Host *HostBuild
	Log  zerolog.Logger
}

// Loader builds, opens and caches plugins by name. It is safe for
// concurrent use. A plugin is built at most once at a time, builds run one
// after another, and a request for a plugin that is already loaded never
// waits for a build. A failed build is remembered with the source content
// that produced it: the same source fails at once, a changed one is built
// again.
type Loader struct {
	log       zerolog.Logger
	src       sourceFinder
	moduleDir string
	cacheDir  string
	hostID    string
	builder   *builder
	flight    singleflight.Group
	ctx       context.Context // cancelled by Close; bounds builds
	cancel    context.CancelFunc

	mu       sync.RWMutex // guards plugins and failures
	plugins  map[string]*artifact
	failures map[string]failure

	amu       sync.Mutex           // guards artifacts
	artifacts map[string]*artifact // by artifact path
}

type failure struct {
	key string // content address of the source that failed
	err error
}

// New returns a Loader. It fails if the server's module cannot be found.
func New(opts Options) (*Loader, error) {
	host := opts.Host
	if host == nil {
		h, err := HostBuildInfo()
		if err != nil {
			return nil, err
		}
		host = &h
	}
	if opts.Go == "" {
		opts.Go = "go"
	}
	if opts.BuildTimeout <= 0 {
		opts.BuildTimeout = 5 * time.Minute
	}
	src, err := newSourceFinder(opts.SrcDir, *host)
	if err != nil {
		return nil, err
	}
	cacheDir, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("plugin cache directory: %w", err)
	}
	moduleDir := opts.ModuleDir
	if moduleDir == "" {
		wd, _ := os.Getwd()
		exe, _ := os.Executable()
		moduleDir, err = FindModuleDir(host.Module, wd, filepath.Dir(exe))
		if err != nil {
			return nil, err
		}
	}
	if moduleDir, err = filepath.Abs(moduleDir); err != nil {
		return nil, fmt.Errorf("plugin module directory: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Loader{
		log:       opts.Log,
		src:       src,
		moduleDir: moduleDir,
		cacheDir:  cacheDir,
		hostID:    host.Identity(),
		builder: &builder{
			goCmd:     opts.Go,
			moduleDir: moduleDir,
			srcDir:    src.dir,
			host:      *host,
			timeout:   opts.BuildTimeout,
			slot:      make(chan struct{}, 1),
		},
		ctx:       ctx,
		cancel:    cancel,
		plugins:   make(map[string]*artifact),
		failures:  make(map[string]failure),
		artifacts: make(map[string]*artifact),
	}, nil
}

// Close cancels builds in progress. Loaded plugins stay in memory: Go
// cannot unload them.
func (l *Loader) Close() error {
	l.cancel()
	return nil
}

// Discover lists the plugins in the source directory and the entries whose
// names cannot name a plugin.
func (l *Loader) Discover() (plugins []Source, skipped []string, err error) {
	return l.src.discover()
}

// methods are probed, in this order, to fill ErrMethodNotAllowed.Allowed.
var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// Handler returns the handler of plugin name for method and function fn,
// building and loading the plugin first if needed. HEAD is served by the
// GET handler. ctx bounds only the wait: a build, once started, finishes
// for the callers that still want it.
func (l *Loader) Handler(ctx context.Context, name, fn, method string) (*Handler, error) {
	switch {
	case !ValidName(name):
		return nil, newError(ErrBadName, "", nil, "invalid plugin name: use 1 to %d letters, digits, '_' or '-'", MaxNameLen)
	case !ValidFunc(fn):
		return nil, newError(ErrBadName, name, nil, "invalid function name: use 1 to %d letters, digits or '_'", MaxNameLen)
	case !ValidMethod(method):
		return nil, newError(ErrMethodNotAllowed, name, nil, "method not allowed")
	case !Supported:
		return nil, newError(ErrUnsupported, name, nil, "%s", unsupportedReason)
	}
	a, err := l.load(ctx, name)
	if err != nil {
		return nil, err
	}
	if method == "HEAD" {
		method = "GET"
	}
	h, err := a.handler(name, method+fn+"Handler")
	if !errors.Is(err, errNoSymbol) {
		return h, err
	}
	if allowed := a.allowed(name, fn); len(allowed) > 0 {
		e := newError(ErrMethodNotAllowed, name, nil, "plugin %q has no %s handler for %s", name, method, fn)
		e.Allowed = allowed
		return nil, e
	}
	return nil, newError(ErrNoHandler, name, nil, "plugin %q has no handler %s", name, method+fn+"Handler")
}

// allowed lists the methods a has a handler for fn for.
func (a *artifact) allowed(name, fn string) []string {
	var allowed []string
	for _, m := range methods {
		if m == "HEAD" {
			continue // added with GET
		}
		if _, err := a.handler(name, m+fn+"Handler"); errors.Is(err, errNoSymbol) {
			continue
		}
		allowed = append(allowed, m)
		if m == "GET" {
			allowed = append(allowed, "HEAD")
		}
	}
	return allowed
}

// load returns the loaded plugin name, loading it on first use.
func (l *Loader) load(ctx context.Context, name string) (*artifact, error) {
	l.mu.RLock()
	a := l.plugins[name]
	l.mu.RUnlock()
	if a != nil {
		return a, nil
	}
	ch := l.flight.DoChan(name, func() (any, error) { return l.loadSlow(name) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*artifact), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for plugin %q: %w", name, ctx.Err())
	}
}

// loadSlow finds, builds if needed and opens plugin name. It runs once
// per name at a time (singleflight).
func (l *Loader) loadSlow(name string) (*artifact, error) {
	l.mu.RLock()
	a := l.plugins[name]
	l.mu.RUnlock()
	if a != nil {
		return a, nil
	}
	src, err := l.src.find(name)
	if err != nil {
		return nil, err
	}
	k, err := key(src, l.moduleDir, l.hostID)
	if err != nil {
		return nil, newError(ErrBuild, name, err, "plugin %q: cannot read its source", name)
	}
	l.mu.RLock()
	f, failed := l.failures[name]
	l.mu.RUnlock()
	if failed && f.key == k {
		return nil, f.err
	}
	a, err = l.buildAndOpen(src, k)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if permanent(err) {
			l.failures[name] = failure{key: k, err: err}
		}
		return nil, err
	}
	delete(l.failures, name)
	l.plugins[name] = a
	return a, nil
}

// permanent reports whether err will recur for the same source: a
// compiler error will, a timeout or a missing go command may not.
func permanent(err error) bool {
	var execErr *exec.Error
	return !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && !errors.As(err, &execErr)
}

func (l *Loader) buildAndOpen(src Source, k string) (*artifact, error) {
	log := l.log.With().Str("plugin", src.Name).Logger()
	path := filepath.Join(l.cacheDir, k[:32]+".so")
	_, err := os.Stat(path)
	cached := err == nil
	if !cached {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, newError(ErrOpen, src.Name, err, "plugin %q: cannot read its artifact", src.Name)
		}
		log.Info().Str("kind", string(src.Kind)).Int("files", len(src.Files)).Msg("plugin build started")
		start := time.Now()
		err := l.builder.build(l.ctx, src, path)
		ev := log.Info()
		if err != nil {
			ev = log.Error().Err(err)
			var e *Error
			if errors.As(err, &e) && e.Output != "" {
				ev = ev.Str("output", e.Output)
			}
		}
		ev.Dur("duration", time.Since(start)).Bool("ok", err == nil).Msg("plugin build finished")
		if err != nil {
			return nil, err
		}
	}
	a, err := l.open(src.Name, path)
	if err != nil {
		log.Error().Err(err).Msg("plugin load failed")
		return nil, err
	}
	log.Info().Str("artifact", filepath.Base(path)).Bool("cached", cached).Msg("plugin loaded")
	return a, nil
}

// open opens path once per process; plugins with equal sources share it.
func (l *Loader) open(name, path string) (*artifact, error) {
	l.amu.Lock()
	defer l.amu.Unlock()
	if a, ok := l.artifacts[path]; ok {
		return a, nil
	}
	a, err := openArtifact(name, path)
	if err != nil {
		return nil, err
	}
	l.artifacts[path] = a
	return a, nil
}
