package build

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/plugerr"
)

// builder runs go build -buildmode=plugin, one build at a time: on a
// small machine concurrent plugin builds are slower than serial ones.
type builder struct {
	goCmd     string
	moduleDir string
	srcDir    string
	cacheDir  string
	modCache  string   // GOMODCACHE, to tell what a build will download
	environ   []string // the go command's environment before ours (see env)
	goflags   string   // the user's GOFLAGS that builds keep (see keptGoflags)
	host      HostBuild
	timeout   time.Duration
	slot      chan struct{} // one token: the build in progress

	mu     sync.Mutex // guards holder, since, took
	holder string     // whose build holds the slot ("warmup": the warm-up)
	since  time.Time
	took   map[string]time.Duration // the last build of each name, for estimates
}

// Building is what the builder is doing: whose build runs (a plugin's
// name, or "warmup" for the build cache warm-up), since when, and how long
// that build took last time (0: unknown). holder is "" when idle.
func (b *builder) Building() (holder string, elapsed, expected time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holder == "" {
		return "", 0, 0
	}
	return b.holder, time.Since(b.since), b.took[b.holder]
}

// lastTook is how long name's last build took (0: none yet).
func (b *builder) lastTook(name string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.took[name]
}

// estimate is when plugin name's build will be done: what is
// left of the build running now, going by how long it took last time,
// plus name's own build when another one runs. Unknown builds count as a
// second, the cold warm-up as 30 s; the estimate is at least a second.
func (b *builder) estimate(name string) time.Duration {
	holder, elapsed, expected := b.Building()
	guess := func(n string, took time.Duration) time.Duration {
		switch {
		case took > 0:
			return took
		case n == WarmupHolder:
			return 30 * time.Second
		}
		return time.Second
	}
	var left time.Duration
	if holder != "" {
		left = max(guess(holder, expected)-elapsed, 0)
	}
	if holder != name {
		left += guess(name, b.lastTook(name))
	}
	return max(left, time.Second)
}

// acquire takes the build slot for name. If another build holds it,
// waiting is told whose before acquire blocks. It returns how long it
// waited.
func (b *builder) acquire(ctx context.Context, name string, waiting func(holder string, elapsed time.Duration)) (time.Duration, error) {
	start := time.Now()
	select {
	case b.slot <- struct{}{}:
	default:
		if holder, elapsed, _ := b.Building(); waiting != nil && holder != "" {
			waiting(holder, elapsed)
		}
		select {
		case b.slot <- struct{}{}:
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		}
	}
	b.mu.Lock()
	b.holder, b.since = name, time.Now()
	b.mu.Unlock()
	return time.Since(start), nil
}

// release frees the slot, remembering how long name's build took.
func (b *builder) release(name string, took time.Duration) {
	b.mu.Lock()
	if b.took == nil {
		b.took = make(map[string]time.Duration)
	}
	b.took[name] = took
	b.holder = ""
	b.mu.Unlock()
	<-b.slot
}

// build compiles src into out, one build at a time: waiting says whose
// build it queues behind, if any. The artifact appears at out atomically,
// or not at all. It returns how long the build waited for its turn.
// pl, if not nil, is the module src declares requirements in (see
// planFor).
func (b *builder) build(ctx context.Context, src Source, out string, pl *plan, log zerolog.Logger, waiting func(holder string, elapsed time.Duration)) (queued time.Duration, err error) {
	queued, err = b.acquire(ctx, src.Name, waiting)
	if err != nil {
		return queued, plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: gave up waiting to build", src.Name)
	}
	start := time.Now()
	defer func() { b.release(src.Name, time.Since(start)) }()
	return queued, b.compile(ctx, src, out, pl, log)
}

// env is the go command's environment for builds: the process's (and
// Options.Env), so that GOPROXY, GOPRIVATE, GONOSUMDB, GOSUMDB and the
// rest apply to downloads as they do to the user's own go commands, with
// what builds must have on top.
func (b *builder) env() []string {
	env := append(slices.Clip(b.environ), b.host.Env...)
	return append(env,
		"GOWORK=off",         // a go.work above the module silently changes versions
		"GOFLAGS="+b.goflags, // the user's, less flags that would change compiled code
		"GOTOOLCHAIN=local",  // the server's toolchain, never a download
		"CGO_ENABLED=1",
	)
}

// compile runs go build for src, holding the slot.
func (b *builder) compile(ctx context.Context, src Source, out string, pl *plan, log zerolog.Logger) (err error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: cannot create the artifact directory", src.Name)
	}
	// Unique across processes sharing the cache (a shared volume): each
	// writes its own file and renames it into place, so a reader sees a
	// whole artifact or none.
	tmp := fmt.Sprintf("%s.%d.%d.tmp", out, os.Getpid(), time.Now().UnixNano())
	defer os.Remove(tmp)
	overlay, stamped, err := stamp(src, filepath.Dir(out))
	if err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: cannot prepare its build", src.Name)
	}
	defer os.RemoveAll(filepath.Dir(overlay))

	// -mod=readonly: never edit a go.mod, not even the build module's.
	// -ldflags=-w: no DWARF, which nothing reads from a plugin (stack
	// traces, panics' sites and profiles use the runtime's own tables):
	// linking hello took 1.32-1.37 s instead of 1.74-1.79 s here, a
	// quarter of an edit's wait, and the artifact is 17% smaller.
	args := []string{"build", "-buildmode=plugin", "-mod=readonly", "-ldflags=-w", "-overlay=" + overlay, "-o", tmp}
	if pl != nil {
		modfile, err := b.resolve(ctx, src.Name, pl, src.Files, log)
		if err != nil {
			return err
		}
		args = append(args, "-modfile="+modfile)
	}
	args = append(append(args, b.host.Flags...), src.Files...)
	cmd := exec.CommandContext(ctx, b.goCmd, args...)
	cmd.Dir = b.moduleDir
	cmd.Env = b.env()
	cmd.WaitDelay = 5 * time.Second
	var output bytes.Buffer
	dl := &downloads{log: log, out: &output}
	cmd.Stdout, cmd.Stderr = dl, dl
	err = cmd.Run()
	dl.flush()
	if err != nil {
		diag := b.relative(output.String(), stamped, src.Files[0])
		cause := err
		if ctx.Err() != nil {
			cause = fmt.Errorf("build exceeded %s: %w", b.timeout, ctx.Err())
		}
		var execErr *exec.Error
		if errors.As(err, &execErr) {
			return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q cannot be built: the go command %q was not found; install Go or set plugins.go", src.Name, b.goCmd)
		}
		e := plugerr.New(plugerr.ErrBuild, src.Name, cause, "plugin %q failed to build", src.Name)
		lib := filepath.Base(filepath.Dir(b.srcDir))
		if pl != nil {
			lib = pl.declared.shown
		}
		if pkg := missingModule(diag); pkg != "" {
			e.Kind = plugerr.ErrDependency
			e.Msg = fmt.Sprintf("plugin %q failed to build: it imports %s, which neither the server nor %s/go.mod provides; run %q", src.Name, pkg, lib, "cd "+lib+" && go get "+pkg)
		} else if pkg := missingSum(diag); pkg != "" {
			e.Kind = plugerr.ErrDependency
			e.Msg = fmt.Sprintf("plugin %q failed to build: %s/go.sum has no checksum for the module providing %s; run %q", src.Name, lib, pkg, "cd "+lib+" && go mod tidy")
		}
		e.Output = diag
		return e
	}
	if err := os.Rename(tmp, out); err != nil {
		return plugerr.New(plugerr.ErrBuild, src.Name, err, "plugin %q: cannot store its artifact", src.Name)
	}
	return nil
}

// stamp gives src's build a package path of its own. The go command
// derives a file build's package path from what it compiles, so equal
// sources under two names would be one plugin to Go: one set of globals
// (Settings and Secrets written by one while the other reads them), Init
// twice on one instance. So the first file is compiled with a comment
// naming the plugin appended, through an overlay (go build -overlay): the
// source stays untouched, lines keep their numbers, and positions in the
// binary name the real file. Copy n > 0 of a plugin (Source.Copy, see
// CopyKey) is stamped "copy n" as well: a package path, and globals, of
// its own; copy 0 is stamped as every plugin always was. stamp writes the copy and the overlay into
// a new directory under dir and returns the overlay's path and the
// copy's; the caller removes the directory.
func stamp(src Source, dir string) (overlay, stamped string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	tmp, err := os.MkdirTemp(dir, ".stamp-")
	if err != nil {
		return "", "", err
	}
	data, err := os.ReadFile(src.Files[0])
	if err == nil {
		stamped = filepath.Join(tmp, filepath.Base(src.Files[0]))
		mark := data
		// A file without a package clause (empty, only comments, a
		// typo) cannot build: unmarked, the compiler's "expected
		// 'package'" names its own last line, not the mark's.
		if _, perr := parser.ParseFile(token.NewFileSet(), "", data, parser.PackageClauseOnly); perr == nil {
			mark = fmt.Appendf(data, "\n// plugind: plugin %s\n", src.Name)
			if src.Copy > 0 {
				mark = fmt.Appendf(data, "\n// plugind: plugin %s copy %d\n", src.Name, src.Copy)
			}
		}
		err = os.WriteFile(stamped, mark, 0o644)
	}
	if err == nil {
		overlay = filepath.Join(tmp, "overlay.json")
		var spec []byte
		spec, err = json.Marshal(map[string]any{"Replace": map[string]string{src.Files[0]: stamped}})
		if err == nil {
			err = os.WriteFile(overlay, spec, 0o644)
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return "", "", err
	}
	return overlay, stamped, nil
}

// relative strips the source and module directories from compiler
// output, so diagnostics read "hello.go:12:3: ..." and never show where
// the server keeps its files. The go command's package header line goes.
// renames are pairs of paths: the compiler reports an overlay's file
// (stamp's copy) under its own path, which becomes the source's.
func (b *builder) relative(out string, renames ...string) string {
	var replace []string
	for i := 0; i+1 < len(renames); i += 2 {
		from, to := renames[i], renames[i+1]
		replace = append(replace, from, to)
		// The go command prints a path relative to its directory where
		// that is shorter, "../" included: a checkout at /tmp/x sees
		// /tmp/y/hello.go as ../y/hello.go.
		if rel, err := filepath.Rel(b.moduleDir, from); err == nil {
			replace = append(replace, "./"+rel, to, rel, to)
		}
	}
	prefixes := []string{b.srcDir + string(filepath.Separator)}
	if rel, err := filepath.Rel(b.moduleDir, b.srcDir); err == nil {
		prefixes = append(prefixes, "./"+rel+string(filepath.Separator), rel+string(filepath.Separator))
	}
	prefixes = append(prefixes, b.moduleDir+string(filepath.Separator))
	var lines []string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if strings.HasPrefix(line, "# ") {
			continue
		}
		for i := 0; i+1 < len(replace); i += 2 {
			line = strings.ReplaceAll(line, replace[i], replace[i+1])
		}
		for _, p := range prefixes {
			line = strings.ReplaceAll(line, p, "")
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// missingSum finds, in compiler output, a package whose module has no
// go.sum line.
func missingSum(out string) string {
	if _, rest, ok := strings.Cut(out, "missing go.sum entry for module providing package "); ok {
		if f := strings.Fields(rest); len(f) > 0 {
			return f[0]
		}
	}
	return ""
}

// missingModule finds, in compiler output, a package no module of the
// build provides.
func missingModule(out string) string {
	for _, marker := range []string{"no required module provides package ", "cannot find module providing package "} {
		if _, rest, ok := strings.Cut(out, marker); ok {
			pkg, _, _ := strings.Cut(rest, ";")
			if f := strings.Fields(pkg); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}
