package build

import (
	"bytes"
	"cmp"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/plugerr"
)

// Options configure a Pipeline.
type Options struct {
	SrcDir   string // plugin sources
	CacheDir string // built artifacts
	// ModuleDir is the module plugins are built in. "" finds the server's
	// own source tree: where it was compiled from (without -trimpath), or
	// above the working directory or the executable; failing that it
	// writes a module pinned to the server's dependency
	// versions (see hostModule).
	ModuleDir string
	Go        string        // go command; "" means "go"
	Timeout   time.Duration // bound on one build; 0 means 5 minutes
	// LoadCheck opens each new artifact in a child process first. nil
	// skips the check: an init that panics or blocks then shows only when
	// the artifact is opened.
	LoadCheck LoadChecker
	// Prebuilt is prebuilt mode (plugins.build = "off", see prebuilt.go):
	// use what `plugind build` made, never run the toolchain, never
	// write to CacheDir.
	Prebuilt bool
	// Host is how the server was built; nil reads the running binary's
	// build information.
	Host *HostBuild
	// Env is added to the go command's environment, after the process's
	// own: GOPROXY, GOMODCACHE and the like, for a server (or a test)
	// whose builds fetch modules elsewhere than its own go commands.
	Env []string
	// Registry records the module versions loaded into the process, so
	// that builds use those versions where a plugin's go.mod allows (see
	// Registry). nil: a new one, for a pipeline that loads nothing
	// itself (plugind build reports conflicts between plugins with it).
	Registry *Registry
	Log      zerolog.Logger
}

// Pipeline turns plugin sources into checked artifacts: it finds a
// plugin's source, computes its artifact's content address (Key), builds
// the artifact if the cache lacks it and checks it against the server's
// build and in a child process (Artifact). It is safe for concurrent use;
// builds run one at a time.
type Pipeline struct {
	log       zerolog.Logger
	src       sourceFinder
	host      HostBuild
	hostID    string
	moduleDir string
	cacheDir  string
	prebuilt  bool // plugins.build = "off"
	builder   *builder
	tool      toolchain // read once at New
	loadCheck LoadChecker
	reg       *Registry

	kmu     sync.Mutex               // guards libKeys, decls, base, vendors, owns and plans
	libKeys map[string]prebuiltKey   // by path
	decls   map[string]*declaredRead // by directory (see declared)
	base    *buildModule             // see buildModule
	vendors map[string]*vendorRead   // by vendor directory and module (see vendorHash)
	owns    map[string]*treeRead     // by module directory and imports (see ownPackages)
	// plans are the build modules Key planned, by the key they gave,
	// until that key's build takes its own: the build is then of exactly
	// the module its key names, whatever the Registry learnt meanwhile,
	// and the plan is not made twice.
	plans map[string]*plan

	onHash        func(path string)   // tests: a source file is being hashed
	onDeclared    func(dir string)    // tests: the module in dir is being read
	onBuildModule func()              // tests: the build module is being read
	onVendor      func(vendor string) // tests: a vendor directory is being hashed
	onOwn         func(dir string)    // tests: the packages of the module in dir are being hashed
}

// prebuiltKey is a prebuilt library's content address, remembered with
// the library's stamp, taken at at, before it was hashed.
type prebuiltKey struct {
	stamp fileStamp
	at    time.Time
	key   string
}

// New returns a Pipeline. Unless in prebuilt mode it finds (or writes)
// the module plugins are built in and reads the go command's
// environment; ctx bounds that.
func New(ctx context.Context, opts Options) (*Pipeline, error) {
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
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	src, err := newSourceFinder(opts.SrcDir, *host)
	if err != nil {
		return nil, err
	}
	cacheDir, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("plugin cache directory: %w", err)
	}
	p := &Pipeline{
		log:       opts.Log,
		src:       src,
		host:      *host,
		hostID:    host.Identity(),
		cacheDir:  cacheDir,
		prebuilt:  opts.Prebuilt,
		loadCheck: opts.LoadCheck,
		reg:       opts.Registry,
		libKeys:   make(map[string]prebuiltKey),
		decls:     make(map[string]*declaredRead),
		vendors:   make(map[string]*vendorRead),
		owns:      make(map[string]*treeRead),
		plans:     make(map[string]*plan),
	}
	if p.reg == nil {
		p.reg = NewRegistry(host.Deps)
	}
	environ := append(goEnviron(), opts.Env...)
	if p.prebuilt {
		// Keys come from the manifest; nothing here may need go.
		p.moduleDir = opts.ModuleDir
		p.log.Info().Str("mode", "prebuilt").Str("cache", cacheDir).
			Msg("plugins.build is off: serving artifacts from plugind build; the go command and a C compiler are never run")
	} else {
		if p.moduleDir, err = p.findModule(ctx, opts.ModuleDir, opts.Go, environ); err != nil {
			return nil, err
		}
		p.tool = readToolchain(ctx, opts.Go, environ)
		if len(p.tool.dropped) > 0 {
			p.log.Info().Strs("ignored", p.tool.dropped).
				Msg("GOFLAGS: plugins are built with the server's build flags; these would change compiled code and are not used")
		}
		if paths := host.sourcePaths(p.moduleDir, p.tool.modCache); paths != "" {
			p.hostID = hashOf(p.hostID + "\n" + paths)
		}
		p.log.Info().Str("mode", "auto").Str("cache", cacheDir).Str("go", cmp.Or(p.tool.goPath, opts.Go)).
			Msg("plugins.build is auto: plugins are built on demand")
	}
	p.builder = &builder{
		goCmd:     opts.Go,
		moduleDir: p.moduleDir,
		srcDir:    src.dir,
		cacheDir:  cacheDir,
		modCache:  p.tool.modCache,
		environ:   environ,
		goflags:   p.tool.goflags,
		host:      *host,
		timeout:   opts.Timeout,
		slot:      make(chan struct{}, 1),
	}
	return p, nil
}

// ModuleDir is the module plugins are built in.
func (p *Pipeline) ModuleDir() string { return p.moduleDir }

// SrcDir is the absolute plugin source directory.
func (p *Pipeline) SrcDir() string { return p.src.dir }

// CacheDir is the absolute artifact cache directory.
func (p *Pipeline) CacheDir() string { return p.cacheDir }

// DeclaredIn is the directory whose go.mod declares the requirements of
// src, a plugin with sources (not KindPrebuilt): a folder plugin's own,
// or, for a single file and a folder without one, the directory beside
// the source directory (lib/go.mod), whether or not that go.mod exists.
// The packages of that module a plugin imports are part of its key.
func (p *Pipeline) DeclaredIn(src Source) string { return declaredDir(src, p.src.dir) }

// Host is the server build artifacts are made for.
func (p *Pipeline) Host() HostBuild { return p.host }

// Prebuilt reports whether p runs in prebuilt mode.
func (p *Pipeline) Prebuilt() bool { return p.prebuilt }

// Find returns the source of the plugin name, which must be valid, or of
// the middleware MiddlewareName(file). Ignored names are not found.
func (p *Pipeline) Find(name string) (Source, error) { return p.src.find(name) }

// Discover lists the plugins in the source directory and the entries whose
// names cannot name a plugin. Middleware (SRC/middlewares) is not among
// them: see DiscoverMiddleware.
func (p *Pipeline) Discover() (plugins []Source, skipped []string, err error) {
	return p.src.discover("")
}

// DiscoverMiddleware lists the middleware plugins: SRC/middlewares/NAME.go,
// the folder SRC/middlewares/NAME/ and prebuilt SRC/../middlewares/NAME.so,
// each named MiddlewareName(NAME), and the entries whose names cannot name
// one.
func (p *Pipeline) DiscoverMiddleware() (middleware []Source, skipped []string, err error) {
	return p.src.discover(MiddlewareDir)
}

// Building is what the pipeline is doing: whose build runs (a plugin's
// name, or WarmupHolder for the build cache warm-up), since when, and how
// long that build took last time (0: unknown). holder is "" when idle.
func (p *Pipeline) Building() (holder string, elapsed, expected time.Duration) {
	return p.builder.Building()
}

// Estimate is when plugin name's build will be done, for a client's
// Retry-After: what is left of the build running now, going by how long
// it took last time, plus name's own build when another one runs.
// Unknown builds count as a second, the cold warm-up as 30 s; the
// estimate is at least a second.
func (p *Pipeline) Estimate(name string) time.Duration { return p.builder.estimate(name) }

// Progress is told how a build that Artifact starts goes; nil fields are
// skipped.
type Progress struct {
	// Waiting: the build queues behind holder's, running for elapsed.
	Waiting func(holder string, elapsed time.Duration)
	// Built: the build finished after dur (its own time, without the
	// queueing), with err nil or its failure.
	Built func(dur time.Duration, err error)
}

// findModule picks the module plugins are built in.
func (p *Pipeline) findModule(ctx context.Context, configured, goCmd string, environ []string) (string, error) {
	// Without -trimpath, only the tree the server was compiled from has
	// packages (sdk) that plugin.Open takes for the server's own. own is
	// that tree, "" if it is gone or paths do not matter (compiled "").
	compiled, own := compiledFrom(p.host), ""
	if compiled != "" {
		own, _ = FindModuleDir(p.host.Module, compiled)
	}
	warnIfNotOwn := func(dir string) {
		if compiled == "" || dir == own {
			return
		}
		p.log.Warn().Str("moduledir", dir).Str("compiled_from", cmp.Or(own, compiled)).
			Msg("this server was built without -trimpath from another source tree: plugins importing its packages (sdk) will not load; build it with -trimpath or build plugins in that tree (plugins.moduledir)")
	}
	if configured != "" {
		dir, err := filepath.Abs(configured)
		if err != nil {
			return "", fmt.Errorf("plugins.moduledir: %w", err)
		}
		if !fileExists(filepath.Join(dir, "go.mod")) {
			return "", fmt.Errorf("plugins.moduledir %s has no go.mod", configured)
		}
		warnIfNotOwn(dir)
		return dir, nil
	}
	if own != "" {
		return own, nil
	}
	wd, _ := os.Getwd()
	exe, _ := os.Executable()
	dir, err := FindModuleDir(p.host.Module, wd, filepath.Dir(exe))
	if err == nil {
		warnIfNotOwn(dir)
		return dir, nil
	}
	p.log.Info().Str("reason", err.Error()).Msg("no source tree of the server: building plugins in a module pinned to its dependency versions")
	if err := os.MkdirAll(p.cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("plugin cache directory: %w", err)
	}
	dir, note, err := hostModule(ctx, goCmd, p.cacheDir, p.host, environ)
	if err != nil {
		return "", err
	}
	if note != "" {
		p.log.Warn().Str("module", dir).Msg(note)
	}
	return dir, nil
}

// WarmupHolder is the warm-up's name among builds (see Building).
const WarmupHolder = "warmup"

// Describe says whose build holder is, for logs.
func Describe(holder string) string {
	if holder == WarmupHolder {
		return "the build cache warm-up (the standard library in plugin mode)"
	}
	return "plugin " + holder
}

// libraryKey is the content address of a prebuilt library, remembered by
// path and stamp (see fileStamp): it is megabytes to hash, and one that
// was refused is asked for again and again.
func (p *Pipeline) libraryKey(src Source) (string, error) {
	path := src.Files[0]
	at := time.Now()
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	st := fileStamp{fi: fi}
	p.kmu.Lock()
	lk, ok := p.libKeys[path]
	p.kmu.Unlock()
	if ok && lk.stamp.same(st) && lk.stamp.settled(lk.at) {
		return lk.key, nil
	}
	k, err := p.hashKey(src)
	if err != nil {
		return "", err
	}
	p.kmu.Lock()
	p.libKeys[path] = prebuiltKey{stamp: st, at: at, key: k}
	p.kmu.Unlock()
	return k, nil
}

// hashKey computes keyFor(src).
func (p *Pipeline) hashKey(src Source) (string, error) {
	if p.onHash != nil {
		for _, f := range src.Files {
			p.onHash(f)
		}
	}
	if p.prebuilt && src.Kind == KindPrebuilt {
		// No module tree to read here: the library and the host alone.
		sh, err := sourceHash(src)
		if err != nil {
			return "", err
		}
		return hashOf("prebuilt library\n" + p.hostID + "\n" + sh), nil
	}
	base, err := p.buildModule()
	if err != nil {
		return "", err
	}
	k, err := keyFor(src, base, p.hostID)
	if err != nil || src.Kind == KindPrebuilt {
		return k, err
	}
	// The files it embeds (//go:embed) are compiled into it: an edit of
	// one is a new artifact. A plugin that embeds none keeps its key.
	if emb, err := embedDigest(src.Files, filepath.Dir(src.Files[0]), nil); err != nil {
		return "", err
	} else if emb != "" {
		k = hashOf(k + "\nembedded " + emb)
	}
	// The module the plugin declares its requirements in: the plan
	// names the versions it will be built with (the resolution that
	// follows is a function of them), so a dependency change rebuilds
	// and a restart with unchanged ones reuses the artifact. A plugin
	// that needs none keeps the key it always had.
	d, err := p.module(src)
	if err != nil || d == nil {
		return k, err
	}
	own, err := p.ownPackages(src, d)
	if err != nil {
		return "", err
	}
	if own != "" {
		// The module's packages it imports are compiled from its
		// directory: an edit of one is a new artifact.
		k = hashOf(k + "\nown packages " + own)
	}
	if pl, err := p.planFor(src, d, p.reg, false); err == nil {
		k = hashOf(k + "\nbuild module " + pl.key)
		p.kmu.Lock()
		p.plans[k] = pl
		p.kmu.Unlock()
		return k, nil
	}
	// Unbuildable as it stands (Artifact says why): a key all the same,
	// which changes with what the user will edit.
	return hashOf(k + "\ndeclared " + string(d.mod) + "\n" + string(d.sum)), nil
}

// Unplan drops the build module Key planned for key k, for a key whose
// build will not come: a loaded middleware's, read to tell whether a
// change needs a restart, which no build in this process takes.
func (p *Pipeline) Unplan(k string) {
	p.kmu.Lock()
	delete(p.plans, k)
	p.kmu.Unlock()
}

// plan is the build module of src's artifact with key k: the one Key
// planned, or, for a key Key did not plan (a copy's, an unbuildable
// source's), a new plan, whose error says why it cannot be built. nil
// when src builds in the server's module as it is (see module).
func (p *Pipeline) plan(src Source, k string) (*plan, error) {
	p.kmu.Lock()
	pl, ok := p.plans[k]
	delete(p.plans, k)
	p.kmu.Unlock()
	if ok {
		return pl, nil
	}
	d, err := p.module(src)
	if err != nil || d == nil {
		return nil, err
	}
	return p.planFor(src, d, p.reg, false)
}

// ProcessModule prepares the build module of src as a program of its
// own (an isolated plugin, see package isolate) and returns its go.mod,
// for go build -modfile; "" when src needs none (see module). Nothing
// in such a program is shared with the server, so the plugin's
// requirements are taken as the go command selects them: a version the
// server or another plugin could not load in-process is fine. Downloads
// are logged with the plugin's name and bounded by ctx.
func (p *Pipeline) ProcessModule(ctx context.Context, src Source) (string, error) {
	if p.prebuilt {
		return "", nil
	}
	d, err := p.module(src)
	if err != nil || d == nil {
		return "", err
	}
	pl, err := p.planFor(src, d, nil, true)
	if err != nil {
		return "", err
	}
	return p.builder.resolve(ctx, src.Name, pl, src.Files, p.log.With().Str("plugin", src.Name).Logger())
}

// GoEnv is the environment the go command runs with for builds, before
// what a build sets itself: the process's, Options.Env, and GOFLAGS less
// the flags that would change compiled code (see keptGoflags), so that
// other builds (isolated plugins' programs) take what plugin builds take.
func (p *Pipeline) GoEnv() []string {
	return append(slices.Clip(p.builder.environ), "GOFLAGS="+p.tool.goflags)
}

// Registry is the record of module versions builds align with.
func (p *Pipeline) Registry() *Registry { return p.reg }

// Modules lists the modules an artifact carries, path -> version (with
// " => replacement" for a replaced one), as its build information says,
// for Registry.Check and Registry.Add. The server's own modules are
// left out.
func (p *Pipeline) Modules(path string) (map[string]string, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading build information: %w", err)
	}
	m := deps(bi)
	for path := range m {
		if _, ok := p.host.Deps[path]; ok || path == p.host.Module {
			delete(m, path)
		}
	}
	return m, nil
}

// Sums are the go.sum lines of the module src declares its
// requirements in, for Registry.Add: a plugin built later and held at a
// version src loaded needs them; nil when it needs no module of its own
// (see module) or its go.sum is empty.
func (p *Pipeline) Sums(src Source) []string {
	if p.prebuilt || src.Kind == KindPrebuilt {
		return nil
	}
	d, err := p.module(src)
	if err != nil || d == nil || len(bytes.TrimSpace(d.sum)) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(d.sum)), "\n")
}

// Path is where the artifact of src with content address k is, or will
// be once Artifact made it: a prebuilt library is its own artifact.
func (p *Pipeline) Path(src Source, k string) string {
	if src.Kind == KindPrebuilt {
		return src.Files[0]
	}
	return p.artifactPath(k)
}

func (p *Pipeline) artifactPath(k string) string {
	return filepath.Join(p.cacheDir, k[:32]+".so")
}

// Artifact makes sure the artifact for src (content address k, from Key)
// exists, building it if it does not, matches the server's build and
// opens cleanly in a child process. It returns the artifact's path (see
// Path) and the build's duration, 0 if the artifact was cached. progress
// (nil: nothing) hears about a build it starts.
func (p *Pipeline) Artifact(ctx context.Context, src Source, k string, progress *Progress) (path string, dur time.Duration, err error) {
	dur, err = p.artifact(ctx, src, k, progress)
	if err != nil {
		return "", 0, err
	}
	return p.Path(src, k), dur, nil
}

func (p *Pipeline) artifact(ctx context.Context, src Source, k string, progress *Progress) (time.Duration, error) {
	path, marker := p.artifactPath(k), p.artifactPath(k)+".ok"
	var dur time.Duration
	_, err := os.Stat(path)
	if src.Kind == KindPrebuilt {
		// Checked where it lies; its marker lives in the cache.
		path, err = src.Files[0], nil
		if err := os.MkdirAll(p.cacheDir, 0o755); err != nil && !p.prebuilt {
			return 0, plugerr.New(plugerr.ErrOpen, src.Name, err, "plugin %q: cannot create the artifact directory", src.Name)
		}
	}
	switch {
	case err == nil:
		p.kmu.Lock()
		delete(p.plans, k) // built already: no build will take it
		p.kmu.Unlock()
		if src.Kind != KindPrebuilt && !p.prebuilt {
			now := time.Now()
			_ = os.Chtimes(path, now, now) // recently used: kept by Prune
		}
	case errors.Is(err, fs.ErrNotExist) && p.prebuilt:
		return 0, p.notBuilt(src.Name, nil, "its artifact is missing from the cache")
	case errors.Is(err, fs.ErrNotExist):
		if dur, err = p.build(ctx, src, k, path, progress); err != nil {
			return 0, err
		}
	default:
		return 0, plugerr.New(plugerr.ErrOpen, src.Name, err, "plugin %q: cannot read its artifact", src.Name)
	}
	diffs, err := Compatible(path, p.host)
	if err != nil {
		return 0, plugerr.New(plugerr.ErrOpen, src.Name, err, "plugin %q: its artifact is unreadable", src.Name)
	}
	if len(diffs) > 0 {
		e := incompatible(src.Name, diffs)
		p.log.Error().Str("plugin", src.Name).Str("problem", e.Msg).Msg("plugin refused")
		return 0, e
	}
	if p.loadCheck != nil && !fileExists(marker) {
		if err := p.loadCheck(ctx, path); err != nil {
			return 0, p.loadCheckFailed(src.Name, path, err)
		}
		if !p.prebuilt {
			_ = os.WriteFile(marker, nil, 0o644)
		}
	}
	return dur, nil
}

// loadCheckFailed is the error for an artifact at path that failed the
// load check with err. The child's report may name the artifact's path:
// not for clients. It is the whole cause, so none is chained (Error
// would say it twice). A checker's plain error is taken for the
// plugin's text: it may carry what the plugin printed.
func (p *Pipeline) loadCheckFailed(name, path string, err error) *plugerr.Error {
	unpath := func(s string) string {
		return strings.ReplaceAll(s, filepath.Dir(path)+string(filepath.Separator), "")
	}
	lc, ok := errors.AsType[*LoadCheckError](err)
	if !ok {
		lc = &LoadCheckError{Reason: "the load check failed", Detail: err.Error()}
	}
	if lc.Detail == "" {
		return plugerr.New(plugerr.ErrInit, name, nil, "plugin %q cannot be loaded: %s", name, unpath(lc.Reason))
	}
	return plugerr.FromPlugin(plugerr.ErrInit, name, unpath(lc.Detail), nil, "plugin %q cannot be loaded: %s", name, unpath(lc.Reason))
}

// build runs the compiler for src's artifact with key k, at path, and
// logs the outcome.
func (p *Pipeline) build(ctx context.Context, src Source, k, path string, progress *Progress) (time.Duration, error) {
	log := p.log.With().Str("plugin", src.Name).Logger()
	log.Info().Str("kind", string(src.Kind)).Int("files", len(src.Files)).Msg("plugin build started")
	start := time.Now()
	pl, err := p.plan(src, k)
	if err != nil {
		log.Error().Err(err).Msg("plugin build refused")
		if progress != nil && progress.Built != nil {
			progress.Built(0, err)
		}
		return 0, err
	}
	queued, err := p.builder.build(ctx, src, path, pl, log, func(holder string, elapsed time.Duration) {
		log.Info().Str("waiting_for", Describe(holder)).Dur("running_for", elapsed).Msg("plugin build waits for another build")
		if progress != nil && progress.Waiting != nil {
			progress.Waiting(holder, elapsed)
		}
	})
	// The build's own time: the wait for its turn is reported apart, so
	// that a cold start's phases (the warm-up, then this build) each
	// have their time.
	dur := time.Since(start) - queued
	ev := log.Info()
	if err != nil {
		ev = log.Error().Err(err)
		var e *plugerr.Error
		if errors.As(err, &e) && e.Output != "" {
			ev = ev.Str("output", e.Output)
		}
	}
	if queued > 0 {
		ev = ev.Dur("queued", queued)
	}
	ev.Dur("duration", dur).Bool("ok", err == nil).Msg("plugin build finished")
	if progress != nil && progress.Built != nil {
		progress.Built(dur, err)
	}
	return dur, err
}
