package loader

import (
	"context"

	"github.com/plugind/plugind/build"
)

// WarmUp runs the pipeline's build cache warm-up (build.Pipeline.WarmUp)
// as loader work: Close stops it. It does nothing in prebuilt mode.
func (l *Loader) WarmUp(ctx context.Context) error {
	if l.pipe.Prebuilt() {
		return nil // nothing is built here
	}
	if !l.begin() {
		return closedError(build.WarmupHolder)
	}
	defer l.end()
	ctx, stop := l.bound(ctx)
	defer stop()
	return l.pipe.WarmUp(ctx)
}

// Prebuild loads every discovered plugin, so that first requests find
// them ready. Failures are logged and remembered like any other. Close
// stops it.
func (l *Loader) Prebuild(ctx context.Context) {
	if !l.begin() {
		return
	}
	defer l.end()
	ctx, stop := l.bound(ctx)
	defer stop()
	found, _, _ := l.Discover()
	for _, s := range found {
		if ctx.Err() != nil {
			return
		}
		_, _, _ = l.flight.Do(s.Name, func() (any, error) { return l.update(s.Name) })
	}
}

// bound returns ctx, ended as well when Close begins.
func (l *Loader) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// Prune deletes the least recently used artifacts until the cache holds
// at most maxBytes, never one this process has open (see
// build.Pipeline.Prune). It returns how many it removed and the bytes
// freed.
func (l *Loader) Prune(maxBytes int64) (removed int, freed int64, err error) {
	return l.pipe.Prune(maxBytes, func(path string) bool { return l.opened(path) != nil })
}

// Prebuilt reports whether the loader's pipeline runs in prebuilt mode.
func (l *Loader) Prebuilt() bool { return l.pipe.Prebuilt() }

// ToolchainProblems reports what is missing to serve plugins here: a
// platform that opens them, and what build.Pipeline.ToolchainProblems
// reports.
func (l *Loader) ToolchainProblems() []string {
	var problems []string
	if !Supported {
		problems = append(problems, unsupportedReason)
	}
	return append(problems, l.pipe.ToolchainProblems()...)
}
