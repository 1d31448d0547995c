package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/sdk"
)

// Options configure a Loader.
type Options struct {
	// Pipeline finds, builds and checks plugins' artifacts; required.
	Pipeline *build.Pipeline
	// BuildWait bounds how long a request waits for a build before it is
	// answered ErrBuilding; 0 means one minute. The build goes on.
	BuildWait time.Duration
	// Reload swaps in a new version when a plugin's source changes (see
	// Watch); without it a plugin loads once, as in prestd.
	Reload bool
	// MaxLoadedBytes is a budget for the artifact bytes loaded into the
	// process, which Go never frees. 0 means no budget. Exceeding it logs
	// a warning; with RefuseOverBudget, further versions are refused.
	MaxLoadedBytes   int64
	RefuseOverBudget bool
	// LegacyWait bounds how long a legacy call waits for its plugin to
	// finish another call before it fails with ErrBusy; 0 means 30 s.
	LegacyWait time.Duration
	// Copies is how many copies of plugin name to load, so that as many
	// prestd-ABI calls run at once ([plugin.NAME] copies, see copies.go);
	// nil or below 2: one, as always. At most build.MaxCopies.
	Copies func(name string) int
	// Settings returns a plugin's settings and secrets: they fill its
	// Settings and Secrets globals and reach its Init hook. nil: none.
	Settings func(name string) (settings map[string]any, secrets map[string]string)
	// Notify, if set, is told what happens to plugins. It runs on the
	// loader's goroutines and must not block.
	Notify func(Event)
	// Bus, if set, gives plugin versions a bus: what a version registers
	// in its Init goes live when it becomes current, replacing the
	// previous version's registrations in one step.
	Bus BusRegistry
	// Tasks, if set, gives plugins a task runner.
	Tasks func(plugin string) sdk.Tasks
	// HookTimeout bounds the wait for Init and Close hooks; 0 means 30 s.
	// A hook that outlives it runs on, unwaited for.
	HookTimeout time.Duration
	Log         zerolog.Logger
}

// Loader opens and serves plugins by name, getting their artifacts from
// its build pipeline. It is safe for concurrent use. A plugin is built at
// most once at a time, builds run one after another (the pipeline's), and a request for a loaded plugin never waits for a
// build, nor touches the disk. A failed build is remembered with the
// source content that produced it: the same source fails at once, a
// changed one is built again.
type Loader struct {
	log         zerolog.Logger
	pipe        *build.Pipeline
	buildWait   time.Duration
	reload      bool
	maxBytes    int64
	refuse      bool
	legacyWait  time.Duration
	copies      func(name string) int
	settings    func(name string) (map[string]any, map[string]string)
	onEvent     func(Event)
	bus         BusRegistry
	hookTimeout time.Duration
	tasks       func(plugin string) sdk.Tasks
	flight      singleflight.Group
	ctx         context.Context // ended by Close; bounds builds and watching
	cancel      context.CancelFunc

	wmu         sync.Mutex     // guards closed, hooksWaited and the Adds to work and hooks
	closed      bool           // Close has begun: no new work, no Init
	hooksWaited bool           // Close waits for hooks: no more Adds
	work        sync.WaitGroup // updates, watching, warm-up, prebuilding, builds
	hooks       sync.WaitGroup // Close hooks of retired versions

	mu      sync.RWMutex // guards plugins
	plugins map[string]*entry

	changed  changes     // what List reports
	watching atomic.Bool // the watcher runs
	lmu      sync.Mutex  // guards scanned
	scanned  *scan       // List's last look at the sources; nil: look again
	known    registry    // the plugins the watcher saw in the source directory

	amu         sync.Mutex // guards artifacts, panicked and loadedBytes
	artifacts   map[string]*artifact
	panicked    map[string]error // artifacts whose init panicked when opened here: Go hangs opening them again
	loadedBytes int64

	// retryMin and retryMax bound the backoff after a failure that may
	// pass (see failure).
	retryMin, retryMax time.Duration
	onParse            func(path string) // tests: List parses a source file

	oldMiddleware sync.Map // middleware files warned about, deprecated location (see Middleware)
}

// Backoff after a failure that may pass: the first retry after
// retryFirst, each next after twice as long, at most retryCap.
const (
	retryFirst = 5 * time.Second
	retryCap   = 5 * time.Minute
)

// entry is one plugin's life in the loader.
type entry struct {
	name string
	cur  atomic.Pointer[version] // the version serving requests; nil: none

	mu       sync.Mutex // guards the fields below
	kind     Kind
	seen     string // content address of the source as last looked up
	building bool
	failure  *failure   // the last failed attempt, until one succeeds
	versions []*version // every version loaded, oldest first
}

// version is one loaded build of a plugin.
type version struct {
	art      *artifact
	key      string
	bytes    int64
	loadedAt time.Time
	buildDur time.Duration // 0 when it came from the cache

	hmu  sync.Mutex    // guards last
	last chan struct{} // closed when the version's last Init or Close step returned (see turn)
}

// failure is a failed attempt to load a plugin's source. It stands for
// that source: one that fails for good (a compiler error, a refused
// artifact, an Init error) until the source changes; one that may pass (a
// timeout, a missing go command, the memory budget) also until retry,
// after a backoff that doubles with each consecutive failure of the same
// source, from retryFirst to retryCap.
type failure struct {
	key   string // content address of the source that failed
	err   error
	at    time.Time
	retry time.Time // zero: until the source changes
	tries int       // consecutive failures that may pass, of this key
}

// stands reports whether f still answers for content k at now.
func (f *failure) stands(k string, now time.Time) bool {
	return f != nil && f.key == k && (f.retry.IsZero() || now.Before(f.retry))
}

// New returns a Loader that gets its artifacts from opts.Pipeline.
func New(opts Options) (*Loader, error) {
	if opts.Pipeline == nil {
		return nil, errors.New("loader: Options.Pipeline is required")
	}
	if opts.BuildWait <= 0 {
		opts.BuildWait = time.Minute
	}
	if opts.HookTimeout <= 0 {
		opts.HookTimeout = 30 * time.Second
	}
	if opts.LegacyWait <= 0 {
		opts.LegacyWait = 30 * time.Second
	}
	if opts.Settings == nil {
		opts.Settings = func(string) (map[string]any, map[string]string) { return nil, nil }
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Loader{
		log:         opts.Log,
		pipe:        opts.Pipeline,
		buildWait:   opts.BuildWait,
		reload:      opts.Reload,
		maxBytes:    opts.MaxLoadedBytes,
		refuse:      opts.RefuseOverBudget,
		legacyWait:  opts.LegacyWait,
		copies:      opts.Copies,
		settings:    opts.Settings,
		onEvent:     opts.Notify,
		bus:         opts.Bus,
		hookTimeout: opts.HookTimeout,
		tasks:       opts.Tasks,
		ctx:         ctx,
		cancel:      cancel,
		plugins:     make(map[string]*entry),
		artifacts:   make(map[string]*artifact),
		panicked:    make(map[string]error),
		retryMin:    retryFirst,
		retryMax:    retryCap,
	}
	return l, nil
}

// Pipeline is the build pipeline the loader gets its artifacts from.
func (l *Loader) Pipeline() *build.Pipeline { return l.pipe }

// ModuleDir is the module plugins are built in.
func (l *Loader) ModuleDir() string { return l.pipe.ModuleDir() }

// Close shuts the Loader down, bounded by ctx. First it stops what runs
// in the background (watching, warm-up, prebuilding, builds in progress)
// and waits for it and for loads in flight, so that nothing is
// initialised after the Close hooks: once Close has begun no Init runs,
// and a request for a plugin not loaded fails with ErrClosed. Then it runs
// the Close hook of every plugin's current version, all at once, each
// bounded by the hook timeout as well, so that a slow hook costs only its
// own plugin; and it waits for the Close hooks of versions that reloads
// retired. A server calls it once its HTTP server has stopped; it needs
// to stop nothing of the loader's itself. Loaded plugins stay in memory:
// Go cannot unload them. Later calls return nil at once.
func (l *Loader) Close(ctx context.Context) error {
	l.wmu.Lock()
	if l.closed {
		l.wmu.Unlock()
		return nil
	}
	l.closed = true
	l.wmu.Unlock()
	l.cancel()
	var mu sync.Mutex // guards errs
	var errs []error
	if !waitFor(ctx, &l.work) {
		errs = append(errs, fmt.Errorf("plugin loads in progress did not stop: %w", ctx.Err()))
	}
	var wg sync.WaitGroup
	for _, e := range l.entries() {
		v := e.cur.Load()
		if v == nil {
			continue
		}
		if v.art.hooks.close == nil {
			if l.bus != nil {
				l.bus.Drop(owner(e.name, v))
			}
			continue
		}
		prev, done := v.turn()
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, l.hookTimeout)
			defer cancel()
			err := l.closeVersion(hctx, e.name, v, prev, done)
			if l.bus != nil {
				l.bus.Drop(owner(e.name, v))
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait() // each is bounded
	l.wmu.Lock()
	l.hooksWaited = true
	l.wmu.Unlock()
	if !waitFor(ctx, &l.hooks) {
		errs = append(errs, fmt.Errorf("Close hooks of reloaded versions did not return: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// begin counts a piece of work Close must wait for, unless Close has
// begun; then it reports false and the work must not start.
func (l *Loader) begin() bool {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return false
	}
	l.work.Add(1)
	return true
}

// end ends a piece of work begin counted.
func (l *Loader) end() { l.work.Done() }

// isClosed reports whether Close has begun.
func (l *Loader) isClosed() bool {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.closed
}

// trackHook counts a retired version's Close hook for Close to wait for,
// unless Close waits no more; the caller calls l.hooks.Done if it did.
func (l *Loader) trackHook() bool {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.hooksWaited {
		return false
	}
	l.hooks.Add(1)
	return true
}

// closedError is the error for work refused because Close has begun.
func closedError(name string) error {
	return newError(ErrClosed, name, nil, "plugin %q: the server is shutting down", name)
}

// waitFor waits for wg while ctx lasts, and reports whether wg finished.
func waitFor(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// entries returns every entry.
func (l *Loader) entries() []*entry {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]*entry, 0, len(l.plugins))
	for _, e := range l.plugins {
		out = append(out, e)
	}
	return out
}

// Discover lists the plugins in the source directory and the entries whose
// names cannot name a plugin.
func (l *Loader) Discover() (plugins []Source, skipped []string, err error) {
	return l.pipe.Discover()
}

// methods are probed, in this order, to fill ErrMethodNotAllowed.Allowed.
var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// AllowedMethods lists the methods a function answers, in the order of
// ErrMethodNotAllowed.Allowed (and so of the Allow header), has telling
// for which methods it has a handler: HEAD comes with GET, whose handler
// serves it (a HEAD handler is never called), each method once. What
// runs plugins elsewhere (package isolate) lists them with it, alike.
func AllowedMethods(has func(method string) bool) []string {
	var allowed []string
	for _, m := range methods {
		if m == "HEAD" || !has(m) {
			continue // HEAD is added with GET
		}
		allowed = append(allowed, m)
		if m == "GET" {
			allowed = append(allowed, "HEAD")
		}
	}
	return allowed
}

// Handler returns the handler of plugin name for method and function fn,
// building and loading the plugin first if needed. HEAD is served by the
// GET handler. ctx bounds only the wait: a build, once started, finishes
// for the callers that still want it.
func (l *Loader) Handler(ctx context.Context, name, fn, method string) (*Handler, error) {
	if err := CheckNames(name, fn); err != nil {
		return nil, err
	}
	if !Supported {
		return nil, newError(ErrUnsupported, name, nil, "%s", unsupportedReason)
	}
	v, err := l.current(ctx, name)
	if err != nil {
		return nil, err
	}
	if method == "HEAD" {
		method = "GET"
	}
	if ValidMethod(method) {
		h, err := v.art.handler(name, method, fn, l.legacyWait)
		if !errors.Is(err, errNoSymbol) {
			return h, err
		}
	}
	return nil, NoHandlerError(name, fn, method, v.art.allowed(name, fn, l.legacyWait))
}

// NoHandlerError is the error for a call of plugin name's fn with a
// method it has no handler for, allowed being the methods it has one for
// (405 with them), or none (404). A method no symbol can be named after
// (see ValidMethod) is not echoed: it may be long, and is no handler's.
func NoHandlerError(name, fn, method string, allowed []string) *Error {
	if !ValidMethod(method) {
		if len(allowed) > 0 {
			e := newError(ErrMethodNotAllowed, name, nil, "plugin %q has no handler for %s for this method (handlers are named after upper-case methods)", name, fn)
			e.Allowed = allowed
			return e
		}
		return newError(ErrNoHandler, name, nil, "plugin %q has no handler for %s", name, fn)
	}
	if len(allowed) > 0 {
		e := newError(ErrMethodNotAllowed, name, nil, "plugin %q has no %s handler for %s", name, method, fn)
		e.Allowed = allowed
		return e
	}
	return newError(ErrNoHandler, name, nil, "plugin %q has no handler %s", name, method+fn+"Handler")
}

// allowed lists the methods a has a handler for fn for.
func (a *artifact) allowed(name, fn string, wait time.Duration) []string {
	return AllowedMethods(func(m string) bool {
		_, err := a.handler(name, m, fn, wait)
		return !errors.Is(err, errNoSymbol)
	})
}

func (l *Loader) lookup(name string) *entry {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.plugins[name]
}

// current returns the version of name that serves requests, loading the
// plugin if it has none.
func (l *Loader) current(ctx context.Context, name string) (*version, error) {
	if e := l.lookup(name); e != nil {
		if v := e.cur.Load(); v != nil {
			return v, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, l.buildWait)
	defer cancel()
	ch := l.flight.DoChan(name, func() (any, error) { return l.update(name) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*version), nil
	default:
	}
	// Not loaded yet: the request waits, and says for what.
	holder, elapsed, _ := l.pipe.Building()
	if holder != "" {
		l.log.Info().Str("plugin", name).Str("waiting_for", build.Describe(holder)).Dur("running_for", elapsed).Msg("request waits for a build")
	}
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*version), nil
	case <-ctx.Done():
		e := newError(ErrBuilding, name, ctx.Err(), "plugin %q is still being built; try again shortly", name)
		e.RetryAfter = l.pipe.Estimate(name)
		return nil, e
	}
}

// update brings plugin name up to date with its source: it builds and
// loads a version for the source's current content unless one is loaded
// already, and makes it current. If that fails and an older version is
// current, the older version keeps serving. It runs once per name at a
// time (singleflight).
func (l *Loader) update(name string) (*version, error) {
	if !l.begin() {
		return nil, closedError(name)
	}
	defer l.end()
	src, err := l.pipe.Find(name)
	if err != nil {
		if errors.Is(err, ErrNotFound) && l.lookup(name) != nil {
			l.unroute(name)
			l.invalidate()
		}
		return nil, err
	}
	e := l.entryFor(name, src.Kind)
	cur := e.cur.Load()
	if cur != nil && (!l.reload || src.Kind == KindPrebuilt) {
		// Load once, as prestd. A prebuilt library cannot be reloaded in
		// any case: Go reopens the same path as the same plugin.
		return cur, nil
	}
	if err := l.pipe.Check(src); err != nil {
		return l.unbuildable(name, cur, err)
	}
	k, err := l.pipe.Key(src)
	if err != nil {
		return l.unbuildable(name, cur, err)
	}
	e.mu.Lock()
	if e.seen != k {
		e.seen = k
		defer l.invalidate() // its handlers may have changed
	}
	e.mu.Unlock()
	if cur != nil && cur.key == k {
		return cur, nil
	}
	log := l.log.With().Str("plugin", name).Logger()
	e.mu.Lock()
	if f := e.failure; f.stands(k, time.Now()) {
		e.mu.Unlock()
		if cur != nil {
			return cur, nil
		}
		return nil, f.err
	}
	if i := slices.IndexFunc(e.versions, func(v *version) bool { return v.key == k }); i >= 0 {
		// A revert to content loaded before: Go cannot load its package
		// path twice, and need not.
		v := e.versions[i]
		e.mu.Unlock()
		if err := l.activate(name, v); err != nil {
			return l.failed(e, k, cur, err)
		}
		if err := l.commit(name, v, cur); err != nil {
			return l.failed(e, k, cur, err)
		}
		e.mu.Lock()
		e.failure = nil
		e.cur.Store(v)
		e.mu.Unlock()
		l.changed.bump()
		l.retire(name, cur)
		log.Info().Str("version", k[:16]).Int("versions", len(e.versions)).
			Int64("loaded_bytes", l.LoadedBytes()).Bool("reverted", true).Msg("plugin reloaded")
		l.notify(Event{Kind: EventReloaded, Plugin: name, Version: k[:16]})
		return v, nil
	}
	e.building = true
	e.mu.Unlock()
	l.changed.bump()

	told := false // the pipeline told this attempt's failure (build_failed)
	v, err := l.load(src, k, &told)
	if err == nil {
		err = l.activate(name, v)
	}
	if err == nil {
		err = l.commit(name, v, cur)
	}
	if err != nil {
		if told {
			return l.failedQuietly(e, k, cur, err)
		}
		return l.failed(e, k, cur, err)
	}
	e.mu.Lock()
	e.building = false
	e.failure = nil
	e.versions = append(e.versions, v)
	e.cur.Store(v)
	n := len(e.versions)
	e.mu.Unlock()
	l.changed.bump()
	if cur != nil {
		l.retire(name, cur)
		log.Info().Str("version", k[:16]).Int("versions", n).
			Int64("loaded_bytes", l.LoadedBytes()).Msg("plugin reloaded")
		l.notify(Event{Kind: EventReloaded, Plugin: name, Version: k[:16]})
	} else {
		l.notify(Event{Kind: EventLoaded, Plugin: name, Version: k[:16]})
	}
	return v, nil
}

// unbuildable answers an update of name whose source the pipeline
// refused before building (an import no go.mod provides): as a failed
// build, the current version cur, if any, keeps serving, and the
// failure is logged and told (build_failed) once per attempt. Without a
// current version the caller, a request, gets err, and nothing is told:
// each request would tell it again.
func (l *Loader) unbuildable(name string, cur *version, err error) (*version, error) {
	if cur == nil {
		return nil, err
	}
	l.log.Warn().Str("plugin", name).Err(err).Msg("plugin reload failed; the last good version keeps serving")
	l.notify(Event{Kind: EventBuildFailed, Plugin: name, Err: err})
	return cur, nil
}

// failed records a failed update of e to content k, and tells it
// (load_failed) unless it is a build's, which the pipeline told. If cur,
// the version serving before, exists, it keeps serving.
func (l *Loader) failed(e *entry, k string, cur *version, err error) (*version, error) {
	if !errors.Is(err, ErrBuild) {
		l.notify(Event{Kind: EventLoadFailed, Plugin: e.name, Version: k[:16], Err: err})
	}
	return l.failedQuietly(e, k, cur, err)
}

// failedQuietly is failed for a failure told already.
func (l *Loader) failedQuietly(e *entry, k string, cur *version, err error) (*version, error) {
	defer l.changed.bump()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.building = false
	if !l.isClosed() { // a failure of shutting down is no failure of the plugin
		now := time.Now()
		f := &failure{key: k, err: err, at: now}
		if !permanent(err) {
			f.tries = 1
			if prev := e.failure; prev != nil && prev.key == k && !prev.retry.IsZero() {
				f.tries = prev.tries + 1
			}
			f.retry = now.Add(l.backoff(f.tries))
		}
		e.failure = f
	}
	if cur != nil {
		l.log.Warn().Str("plugin", e.name).Err(err).Msg("plugin reload failed; the last good version keeps serving")
		return cur, nil
	}
	return nil, err
}

// backoff is how long a failure that may pass stands after its n-th
// consecutive occurrence.
func (l *Loader) backoff(n int) time.Duration {
	d := l.retryMin
	for ; n > 1 && d < l.retryMax; n-- {
		d *= 2
	}
	return min(d, l.retryMax)
}

// entryFor returns the entry of name, creating it. Entries exist only for
// plugins whose source was found, so requests for random names cannot
// grow the map.
func (l *Loader) entryFor(name string, kind Kind) *entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.plugins[name]
	if e == nil {
		e = &entry{name: name}
		l.plugins[name] = e
		defer l.changed.bump()
	}
	e.mu.Lock()
	e.kind = kind
	e.mu.Unlock()
	return e
}

// unroute stops serving a plugin whose source is gone. Its code stays in
// memory; a new source under the name loads afresh.
func (l *Loader) unroute(name string) {
	if e := l.lookup(name); e != nil {
		v := e.cur.Swap(nil)
		if v == nil {
			return
		}
		if l.bus != nil {
			l.bus.Drop(owner(name, v))
		}
		l.changed.bump()
		l.log.Info().Str("plugin", name).Msg("plugin removed: its source is gone")
		l.notify(Event{Kind: EventRemoved, Plugin: name})
		l.retire(name, v)
	}
}

// permanent reports whether err will recur for the same source: a
// compiler error will, a timeout or a missing go command may not.
func permanent(err error) bool {
	var execErr *exec.Error
	return !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) &&
		!errors.As(err, &execErr) && !errors.Is(err, ErrOverBudget) &&
		!errors.Is(err, ErrNotBuilt) // plugind build may fill a shared cache later
}

// load returns a loaded version of src with content address k: the one
// already open, or the cached artifact, or a new build. told is set when
// a failure was told by the build (build_failed).
func (l *Loader) load(src Source, k string, told *bool) (*version, error) {
	path := l.pipe.Path(src, k)
	progress := &build.Progress{
		Built: func(dur time.Duration, err error) {
			if err != nil {
				*told = true
				l.notify(Event{Kind: EventBuildFailed, Plugin: src.Name, Duration: dur, Err: err})
			} else {
				l.notify(Event{Kind: EventBuilt, Plugin: src.Name, Duration: dur})
			}
		},
	}
	if a := l.opened(path); a != nil {
		if _, err := l.withCopies(src, k, a, progress); err != nil { // a failed attempt may have left them out
			return nil, err
		}
		return &version{art: a, key: k, bytes: a.totalBytes(), loadedAt: time.Now()}, nil
	}
	if err := l.checkBudget(src.Name); err != nil {
		return nil, err
	}
	path, dur, err := l.pipe.Artifact(l.ctx, src, k, progress)
	if err != nil {
		return nil, err
	}
	a, err := l.open(src, path)
	if err != nil {
		l.log.Error().Str("plugin", src.Name).Err(err).Msg("plugin load failed")
		return nil, err
	}
	l.log.Info().Str("plugin", src.Name).Str("version", k[:16]).Bool("cached", dur == 0).
		Int64("bytes", a.bytes).Msg("plugin loaded")
	copiesDur, err := l.withCopies(src, k, a, progress)
	if err != nil {
		l.log.Error().Str("plugin", src.Name).Err(err).Msg("plugin load failed")
		return nil, err
	}
	return &version{art: a, key: k, bytes: a.totalBytes(), loadedAt: time.Now(), buildDur: dur + copiesDur}, nil
}

// opened returns the artifact at path if this process has opened it.
func (l *Loader) opened(path string) *artifact {
	l.amu.Lock()
	defer l.amu.Unlock()
	return l.artifacts[path]
}

// open opens path, src's artifact, once per process; plugins with equal
// sources share it. Go allows one version of each package per process,
// so the modules the artifact carries are checked against those loaded
// before (the pipeline's Registry) first, and recorded after: under amu,
// so that two plugins cannot both pass the check with two versions.
func (l *Loader) open(src Source, path string) (*artifact, error) {
	name := src.Name
	mods, err := l.pipe.Modules(path)
	if err != nil {
		return nil, newError(ErrOpen, name, err, "plugin %q: its artifact is unreadable", name)
	}
	reg, sums := l.pipe.Registry(), l.pipe.Sums(src) // read before taking amu
	l.amu.Lock()
	defer l.amu.Unlock()
	if a, ok := l.artifacts[path]; ok {
		return a, nil
	}
	if err, ok := l.panicked[path]; ok {
		return nil, err // a revert to its content: Go would hang
	}
	if conflicts := reg.Check(mods); len(conflicts) > 0 {
		return nil, build.ConflictError(name, conflicts)
	}
	a, err := openInProcess(name, path)
	if errors.Is(err, ErrInit) {
		l.panicked[path] = err
	}
	if err != nil {
		return nil, err
	}
	reg.Add(name, mods, sums)
	a.modules = mods
	if fi, err := os.Stat(path); err == nil {
		a.bytes = fi.Size()
	}
	l.artifacts[path] = a
	l.loadedBytes += a.bytes
	return a, nil
}

// LoadedBytes is the size of every artifact this process has opened:
// memory Go never gives back.
func (l *Loader) LoadedBytes() int64 {
	l.amu.Lock()
	defer l.amu.Unlock()
	return l.loadedBytes
}

// checkBudget warns, or refuses, when loaded artifacts exceed the budget.
func (l *Loader) checkBudget(name string) error {
	loaded := l.LoadedBytes()
	if l.maxBytes <= 0 || loaded < l.maxBytes {
		return nil
	}
	if l.refuse {
		return newError(ErrOverBudget, name, nil, "plugin %q: not loading another version: loaded plugins hold %d bytes, the budget is %d (restart to free them)", name, loaded, l.maxBytes)
	}
	l.log.Warn().Str("plugin", name).Int64("loaded_bytes", loaded).Int64("budget", l.maxBytes).
		Msg("loaded plugins exceed the memory budget; Go cannot unload them: restart to free memory")
	return nil
}
