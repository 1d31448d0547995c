package loader

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/sdk"
)

// Copies of a plugin ([plugin.NAME] copies = N, Options.Copies) lift the
// one-call-at-a-time of prestd's ABI: the plugin is built N times, each
// copy under a package path of its own (build.Source.Copy), so each has
// its own HTTPVars and URLQuery and N legacy calls run at once, each in
// a free copy (see artifact). Copy 0 is the plugin as it is without
// copies: same artifact, same key; copy n's key is build.CopyKey of it,
// so a version is N artifacts, each built, compatibility-checked and
// load-checked like any, and a reload swaps all N at once.
//
// All of a copy's package state is its own, not only the two globals: a
// counter, a cache, a sync.Once are N of each. So per copy:
//
//   - Settings and Secrets are filled in every copy, each other than
//     copy 0 getting a shallow copy of the maps: copies that run at
//     once never share one (a table nested in the settings they do).
//   - Init runs in every copy, one after the other, copy 0 first; Close
//     likewise. The hook timeout bounds all of a version's Inits (or
//     Closes) together. What Init does outside its package (a file, a
//     connection, a task it starts) it does N times.
//   - The bus sees copy 0 only: its Init's Subscribe and Handle are the
//     plugin's registrations. The other copies' Inits may publish and
//     dispatch, but what they register is discarded (the calls succeed),
//     so that an event reaches the plugin once and a command has one
//     handler, not N, and a plugin need not know it is copied. Bus
//     handlers run concurrently anyway: they do not use the globals.
//   - Health runs in copy 0; middleware symbols come from copy 0.
//   - Standard-ABI handlers run in copy 0: they get the request itself
//     and run concurrently without copies. A plugin with no prestd-ABI
//     handler in its source, or a prebuilt NAME.so (no source to copy),
//     is loaded once, with a warning.

// copiesOf is how many copies of src to load: Options.Copies, unless
// copies cannot help it (see CopiesOf), which it logs.
func (l *Loader) copiesOf(src Source) int {
	if l.copies == nil {
		return 1
	}
	configured := l.copies(src.Name)
	n, why := CopiesOf(src, configured)
	if why != "" {
		l.log.Warn().Str("plugin", src.Name).Int("copies", configured).Str("reason", why).Msg("plugin copies ignored: loading one copy")
	}
	return n
}

// CopiesOf is how many copies of src a loader asked for configured
// copies ([plugin.NAME] copies) loads: configured, within 1 and
// build.MaxCopies, or 1 where copies cannot help, with the reason why.
// `plugind build` builds as many.
func CopiesOf(src Source, configured int) (n int, ignored string) {
	n = min(max(configured, 1), build.MaxCopies)
	switch {
	case n == 1:
		return 1, ""
	case src.Kind == KindPrebuilt:
		return 1, "it is a prebuilt library, with no source to build copies from"
	case !slices.ContainsFunc(SourceHandlers(src), func(h HandlerInfo) bool { return h.ABI == ABILegacy }):
		return 1, "it has no prestd-ABI handler (func() string or func() (string, int)); standard handlers run concurrently without copies"
	}
	return n, ""
}

// withCopies gives a, copy 0 of src's version k, the other copies
// copiesOf asks for, building and opening each like any artifact. A
// failed copy fails the version; those opened stay open (Go cannot close
// them) and are reused by the next attempt. It returns the copies' build
// time. a must not serve yet: its copies and sem change.
func (l *Loader) withCopies(src Source, k string, a *artifact, progress *build.Progress) (time.Duration, error) {
	n := l.copiesOf(src)
	if n == 1 || a.copies != nil {
		return 0, nil
	}
	copies := []*artifact{a}
	var built time.Duration
	for i := 1; i < n; i++ {
		c := src
		c.Copy = i
		ck := build.CopyKey(k, i)
		if l.opened(l.pipe.Path(c, ck)) == nil {
			if err := l.checkBudget(src.Name); err != nil { // each copy is memory for good
				return built, err
			}
		}
		path, dur, err := l.pipe.Artifact(l.ctx, c, ck, progress)
		if err != nil {
			return built, fmt.Errorf("copy %d: %w", i, err)
		}
		built += dur
		ca, err := l.open(c, path)
		if err != nil {
			return built, fmt.Errorf("copy %d: %w", i, err)
		}
		copies = append(copies, ca)
	}
	a.copies, a.sem = copies, make(chan struct{}, n)
	l.log.Info().Str("plugin", src.Name).Str("version", k[:16]).Int("copies", n).Msg("plugin copies loaded")
	return built, nil
}

// all is every copy of a: a alone without copies.
func (a *artifact) all() []*artifact {
	if a.copies == nil {
		return []*artifact{a}
	}
	return a.copies
}

// totalBytes is what all of a's copies hold.
func (a *artifact) totalBytes() int64 {
	var n int64
	for _, c := range a.all() {
		n += c.bytes
	}
	return n
}

// initCopies is the Init hook of a version: each copy's with its env
// (see copyEnvs), in turn, copy 0 first; the first failure ends it.
func initCopies(a *artifact, envs []*sdk.Env) func(context.Context) error {
	return func(ctx context.Context) error {
		for i, c := range a.all() {
			cctx := ctx
			if i > 0 {
				cctx = sdk.NewContext(ctx, envs[i])
			}
			if err := c.hooks.init(cctx, envs[i].Settings); err != nil {
				if i > 0 {
					return fmt.Errorf("copy %d: %w", i, err)
				}
				return err
			}
		}
		return nil
	}
}

// closeCopies is the Close hook of a version: every copy's, copy 0
// first; a failure does not stop the others.
func closeCopies(a *artifact) func(context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		for i, c := range a.all() {
			if err := contained(ctx, c.hooks.close); err != nil {
				if i > 0 {
					err = fmt.Errorf("copy %d: %w", i, err)
				}
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
}

// contained runs hook, returning a panic in it as an error.
func contained(ctx context.Context, hook func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return hook(ctx)
}

// copyEnvs are the envs of n copies: env for copy 0, and for each other
// one env with a shallow copy of the settings and secrets, so that copies
// running at once never share a map (a table nested in the settings is
// still shared), and a bus whose registrations are discarded (see the
// top of this file).
func copyEnvs(env *sdk.Env, n int) []*sdk.Env {
	envs := []*sdk.Env{env}
	for range n - 1 {
		c := *env
		c.Settings, c.Secrets = maps.Clone(env.Settings), maps.Clone(env.Secrets)
		if c.Bus != nil {
			c.Bus = discardRegistrations{c.Bus}
		}
		envs = append(envs, &c)
	}
	return envs
}

// discardRegistrations is a bus whose Subscribe and Handle do nothing.
type discardRegistrations struct{ sdk.Bus }

func (discardRegistrations) Subscribe(string, func(context.Context, []byte) error) error {
	return nil
}

func (discardRegistrations) Handle(string, func(context.Context, []byte) ([]byte, error)) error {
	return nil
}
