package loader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/plugind/plugind/sdk"
)

// BusRegistry is the part of the bus the loader drives (*bus.Bus).
type BusRegistry interface {
	Stage(owner string)
	Commit(owner, replaced string) error
	Drop(owner string)
	Client(owner string, registrations bool) sdk.Bus
}

// owner names version v of plugin name on the bus.
func owner(name string, v *version) string {
	if v == nil {
		return ""
	}
	return name + "@" + v.key[:16]
}

// env is what a plugin's hooks see through the sdk; with a bus, its
// registrations (Init's alone) belong to version v.
func (l *Loader) env(name string, v *version, registrations bool) *sdk.Env {
	settings, secrets := l.settings(name)
	env := &sdk.Env{
		Plugin:   name,
		Settings: settings,
		Secrets:  secrets,
		Log:      l.log.With().Str("plugin", name).Logger(),
	}
	if l.bus != nil {
		env.Bus = l.bus.Client(owner(name, v), registrations)
	}
	if l.tasks != nil {
		env.Tasks = l.tasks(name)
	}
	return env
}

// commit makes version v's bus registrations live in place of those of
// cur, the version it replaces.
func (l *Loader) commit(name string, v, cur *version) error {
	if l.bus == nil {
		return nil
	}
	if err := l.bus.Commit(owner(name, v), owner(name, cur)); err != nil {
		l.bus.Drop(owner(name, v))
		return pluginError(ErrInit, name, err.Error(), err, "plugin %q cannot be loaded: its bus registrations were refused", name)
	}
	return nil
}

// activate prepares version v of plugin name to serve: it fills the
// Settings and Secrets globals and runs the Init hook, in every copy of
// the plugin (see copies.go). An Init error makes the version
// unavailable with that message.
//
// A version is activated again when the source reverts to its content
// (Go cannot load it twice), perhaps after a reload retired it and its
// Close ran. Its hooks take turns (see version.turn): activation waits
// for the version's last Init or Close to return, at most the hook
// timeout, before it touches the globals or runs Init; if that hook is
// still running then, the version is not activated (a failure that may
// pass). So Init never runs while Close does, and a version whose Close
// ran is initialised again only after Close returned. Nothing is
// activated once the Loader is closed.
func (l *Loader) activate(name string, v *version) (err error) {
	a := v.art
	prev, done := v.turn()
	if !l.await(name, prev) {
		go func() { <-prev; done() }() // the next step waits for that one too
		if l.isClosed() {
			return closedError(name)
		}
		return newError(ErrInit, name, context.DeadlineExceeded, "plugin %q: its last Init or Close did not return within %s; not initialising it again meanwhile", name, l.hookTimeout)
	}
	defer func() {
		if done != nil { // Init was not started
			done()
		}
	}()
	if l.isClosed() {
		return closedError(name)
	}
	env := l.env(name, v, true)
	if l.bus != nil {
		l.bus.Stage(owner(name, v)) // live at commit, when v becomes current
	}
	envs := copyEnvs(env, len(a.all()))
	for i, c := range a.all() { // every copy has globals of its own
		if c.settings != nil {
			*c.settings = envs[i].Settings
		}
		if c.secrets != nil {
			*c.secrets = envs[i].Secrets
		}
	}
	if a.hooks.init == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(sdk.NewContext(l.ctx, env), l.hookTimeout)
	defer cancel()
	defer func() {
		if err != nil && l.bus != nil {
			l.bus.Drop(owner(name, v)) // what Init registered goes with it
		}
	}()
	returned := done
	done = nil
	if err := runHookThen(ctx, initCopies(a, envs), returned); err != nil {
		if errors.Is(err, errHookTimeout) {
			return newError(ErrInit, name, context.DeadlineExceeded, "plugin %q: Init did not return within %s", name, l.hookTimeout)
		}
		return pluginError(ErrInit, name, err.Error(), err, "plugin %q: Init failed", name)
	}
	return nil
}

// turn takes v's next turn for a lifecycle step (activation with Init, or
// Close): prev is closed when the step before it has returned (nil: there
// was none), and done must be called once this step has returned, hook
// included; a hook that outlives its timeout keeps the turn until it
// returns. Steps on one version thus never overlap, and run in the order
// their turns were taken.
func (v *version) turn() (prev <-chan struct{}, done func()) {
	ch := make(chan struct{})
	v.hmu.Lock()
	prev, v.last = v.last, ch
	v.hmu.Unlock()
	return prev, sync.OnceFunc(func() { close(ch) })
}

// await waits for prev, the step before a version's next, at most the
// hook timeout and while the Loader is open, and reports whether it
// returned.
func (l *Loader) await(name string, prev <-chan struct{}) bool {
	if prev == nil {
		return true
	}
	select {
	case <-prev:
		return true
	default:
	}
	l.log.Info().Str("plugin", name).Msg("waiting for the version's last Init or Close to return")
	t := time.NewTimer(l.hookTimeout)
	defer t.Stop()
	select {
	case <-prev:
		return true
	case <-t.C:
	case <-l.ctx.Done():
	}
	return false
}

// errHookTimeout: a hook outlived its context. It runs on; we stop waiting.
var errHookTimeout = errors.New("hook did not return in time")

// runHook runs a plugin hook, waiting for it no longer than ctx lasts: a
// hook that blocks must not hold up a reload or a shutdown forever. A
// panic in it is returned.
func runHook(ctx context.Context, hook func(context.Context) error) error {
	return runHookThen(ctx, hook, nil)
}

// runHookThen is runHook that calls returned, if not nil, when the hook
// has returned (or panicked), however long after runHookThen that is.
func runHookThen(ctx context.Context, hook func(context.Context) error, returned func()) error {
	done := make(chan error, 1)
	go func() {
		if returned != nil {
			defer returned()
		}
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("panic: %v", p)
			}
		}()
		done <- hook(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errHookTimeout
	}
}

// retire runs the Close hook of a version that stopped serving, in the
// background: calls still in flight on it may finish meanwhile. Its turn
// is taken at once, so that a revert to v (activate) waits for this
// Close. Loader.Close waits for it.
func (l *Loader) retire(name string, v *version) {
	if v == nil || v.art.hooks.close == nil {
		return
	}
	prev, done := v.turn()
	tracked := l.trackHook()
	go func() {
		if tracked {
			defer l.hooks.Done()
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(l.ctx), l.hookTimeout)
		defer cancel()
		if err := l.closeVersion(ctx, name, v, prev, done); err != nil {
			l.log.Warn().Str("plugin", name).Err(err).Msg("plugin Close failed")
		}
	}()
}

// closeVersion runs v's Close hook, in every copy, in its turn (prev, done: see
// version.turn), bounded by ctx, containing a panic.
func (l *Loader) closeVersion(ctx context.Context, name string, v *version, prev <-chan struct{}, done func()) error {
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
			go func() { <-prev; done() }()
			return fmt.Errorf("plugin %q: Close not run: its Init did not return in time", name)
		}
	}
	if err := runHookThen(sdk.NewContext(ctx, l.env(name, v, false)), closeCopies(v.art), done); err != nil {
		return fmt.Errorf("plugin %q: Close: %w", name, err)
	}
	return nil
}

// Health runs the Health hook of every serving plugin that has one, all
// at once, each bounded by timeout, and returns each one's result: "ok",
// "Health did not answer within ...", or the error the hook returned.
// That error is the plugin's text, which may hold anything: show a result
// other than "ok" to operators only (others may be told "failing").
func (l *Loader) Health(ctx context.Context, timeout time.Duration) map[string]string {
	var mu sync.Mutex // guards out
	out := make(map[string]string)
	var wg sync.WaitGroup
	for _, e := range l.entries() {
		v := e.cur.Load()
		if v == nil || v.art.hooks.health == nil {
			continue
		}
		wg.Go(func() {
			status := l.health(ctx, e.name, v, timeout)
			mu.Lock()
			out[e.name] = status
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (l *Loader) health(ctx context.Context, name string, v *version, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(sdk.NewContext(ctx, l.env(name, v, false)), timeout)
	defer cancel()
	switch err := runHook(ctx, v.art.hooks.health); {
	case errors.Is(err, errHookTimeout):
		return fmt.Sprintf("Health did not answer within %s", timeout)
	case err != nil:
		return err.Error()
	}
	return "ok"
}
