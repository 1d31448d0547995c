package isolate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/isolate/child"
	"github.com/plugind/plugind/loader"
)

// plugin is one isolated plugin: its current generation of processes,
// its failures and crashes.
type plugin struct {
	m    *Manager
	name string
	log  zerolog.Logger

	reloading sync.Mutex // one reload at a time

	mu         sync.Mutex
	gen        *generation // serving; nil before the first start
	starting   chan struct{}
	failure    error // the last failed build or start
	failedAt   time.Time
	crashes    []time.Time // within the crash window
	crashTotal int
	down       string // the crash loop's last reason; "" while serving
	downAt     time.Time
	handlers   map[string]*Handler
	rr         atomic.Uint64
}

func (p *plugin) handler(symbol string, abi loader.ABI) *Handler {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.handlers[symbol]
	if h == nil || h.abi != abi {
		h = &Handler{p: p, symbol: symbol, abi: abi}
		p.handlers[symbol] = h
	}
	return h
}

// serving returns the serving generation, starting the plugin if it has
// none, waiting for that at most the build wait.
func (p *plugin) serving(ctx context.Context) (*generation, error) {
	p.mu.Lock()
	if g := p.gen; g != nil {
		p.mu.Unlock()
		return g, nil
	}
	if p.failure != nil && time.Since(p.failedAt) < p.m.opts.RetryFailed {
		err := p.failure
		p.mu.Unlock()
		return nil, err
	}
	ch := p.starting
	if ch == nil {
		ch = make(chan struct{})
		p.starting = ch
		go p.start(ch)
	}
	p.mu.Unlock()
	t := time.NewTimer(p.m.opts.BuildWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		return nil, &loader.Error{Kind: loader.ErrBuilding, Plugin: p.name, Msg: fmt.Sprintf("plugin %q is still being built and started; try again", p.name)}
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for plugin %q to start: %w", p.name, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.gen != nil:
		return p.gen, nil
	case p.failure != nil:
		return nil, p.failure
	}
	// Started as the manager closed: its processes were stopped.
	return nil, &loader.Error{Kind: loader.ErrRestarting, Plugin: p.name, Msg: fmt.Sprintf("plugin %q: the server is shutting down", p.name)}
}

// start builds and starts the first generation, then closes ch.
func (p *plugin) start(ch chan struct{}) {
	g, err := p.launch(p.m.ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	defer close(ch)
	p.starting = nil
	if err != nil {
		p.failure, p.failedAt = err, time.Now()
		ev := p.log.Error().Err(err)
		var le *loader.Error
		if errors.As(err, &le) && le.Output != "" {
			ev = ev.Str("output", le.Output)
		}
		ev.Msg("isolated plugin cannot start")
		return
	}
	p.failure = nil
	// A reload got there first, or the manager closed meanwhile (Close
	// cancels before it looks at p.gen under p.mu: one of the two sees
	// the other).
	if p.gen != nil || p.m.ctx.Err() != nil {
		go g.retire(p.m.opts.Grace)
		return
	}
	p.gen = g
}

// launch builds the source and starts a generation of processes, each
// healthy before it returns.
func (p *plugin) launch(ctx context.Context) (*generation, error) {
	prog, err := p.build(ctx)
	if err != nil {
		return nil, err
	}
	return p.startGeneration(ctx, prog)
}

// build builds the plugin's current source (a cache hit if unchanged).
func (p *plugin) build(ctx context.Context) (*program, error) {
	src, err := p.m.opts.Find(p.name)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	prog, _, err := p.m.builder.build(ctx, src)
	if err != nil {
		return nil, err
	}
	p.log.Debug().Dur("took", time.Since(began)).Str("hash", prog.key[:16]).Msg("isolated plugin built")
	return prog, nil
}

// startGeneration starts prog's processes.
func (p *plugin) startGeneration(ctx context.Context, prog *program) (*generation, error) {
	n := max(1, p.m.opts.Processes(p.name))
	g := &generation{p: p, prog: prog, at: time.Now(), slots: make([]atomic.Pointer[proc], n), stop: make(chan struct{})}
	settings, secrets := p.m.opts.Settings(p.name)
	g.cfg = child.Config{Settings: settings, Secrets: secrets, HookTimeout: p.m.opts.HookTimeout, LegacyWait: p.m.opts.LegacyWait}
	first := make([]*proc, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { first[i], errs[i] = startProc(ctx, p.name, prog, g.cfg, p.m.opts.StartTimeout, p.m.log) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, pr := range first {
			if pr != nil {
				go pr.stop(p.m.opts.Grace)
			}
		}
		var le *loader.Error
		if errors.As(err, &le) {
			return nil, le
		}
		return nil, err
	}
	for i, pr := range first {
		g.slots[i].Store(pr)
		go g.supervise(i, pr)
	}
	return g, nil
}

// reload replaces the serving generation with one built from the current
// source, once every new process is healthy.
func (p *plugin) reload(ctx context.Context) error {
	p.reloading.Lock()
	defer p.reloading.Unlock()
	prog, err := p.build(ctx)
	if err == nil {
		p.mu.Lock()
		same := p.gen != nil && p.gen.prog.key == prog.key && p.down == ""
		p.mu.Unlock()
		if same {
			return nil // unchanged and serving: nothing to do
		}
	}
	var g *generation
	if err == nil {
		g, err = p.startGeneration(ctx, prog)
	}
	if err != nil {
		if p.m.ctx.Err() == nil { // a reload cut short by Close is no failure of the plugin
			p.log.Error().Err(err).Msg("isolated plugin reload failed; the previous version keeps serving")
		}
		return err
	}
	p.mu.Lock()
	if p.m.ctx.Err() != nil { // closed meanwhile
		p.mu.Unlock()
		g.retire(p.m.opts.Grace)
		return p.m.ctx.Err()
	}
	old := p.gen
	p.gen, p.failure, p.down, p.crashes = g, nil, "", nil
	p.mu.Unlock()
	p.log.Info().Str("hash", g.prog.key[:16]).Int("processes", len(g.slots)).Msg("isolated plugin reloaded")
	if old != nil {
		old.retire(p.m.opts.Grace)
	}
	return nil
}

// shutdown stops the plugin's processes for good.
func (p *plugin) shutdown() {
	p.mu.Lock()
	g := p.gen
	p.mu.Unlock()
	if g != nil {
		g.retire(p.m.opts.Grace)
	}
}

// pick chooses the least busy serving process of the current generation,
// round robin among equals, and counts a call into it.
func (p *plugin) pick() (*proc, error) {
	p.mu.Lock()
	g, down := p.gen, p.down
	p.mu.Unlock()
	if down != "" {
		return nil, &loader.Error{Kind: loader.ErrRestarting, Plugin: p.name, Detail: down,
			Msg: fmt.Sprintf("plugin %q is down after %d crashes within %s; it starts again when reloaded", p.name, p.m.opts.CrashLoop, p.m.opts.CrashWindow)}
	}
	if g == nil {
		return nil, &loader.Error{Kind: loader.ErrRestarting, Plugin: p.name, Msg: fmt.Sprintf("plugin %q is not running; try again", p.name)}
	}
	for attempt := range 3 {
		if attempt > 0 {
			// The process chosen was retired meanwhile (a reload switched
			// generations): the next try reads the current one.
			p.mu.Lock()
			g = p.gen
			p.mu.Unlock()
			if g == nil {
				break
			}
		}
		var best *proc
		bestLoad := 0
		n := len(g.slots)
		start := int(p.rr.Add(1) % uint64(n))
		for i := range n {
			pr := g.slots[(start+i)%n].Load()
			if pr == nil || pr.gone() {
				continue
			}
			if l := pr.load(); best == nil || l < bestLoad {
				best, bestLoad = pr, l
			}
		}
		if best == nil {
			break
		}
		if best.acquire() {
			return best, nil
		}
	}
	return nil, &loader.Error{Kind: loader.ErrRestarting, Plugin: p.name, Msg: fmt.Sprintf("plugin %q is restarting after a crash; try again", p.name)}
}

// overdue is told that a call on pr outlived its timeout. A legacy call
// holds the child's lock for as long as it runs, so the child is killed
// and restarted; otherwise it is killed only if it stops answering.
func (p *plugin) overdue(pr *proc, abi loader.ABI) {
	if abi == loader.ABILegacy {
		p.log.Warn().Int("pid", pr.pid).Msg("a legacy call outlived the plugin's timeout: restarting its process")
		pr.kill("a legacy call outlived the plugin's timeout")
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(p.m.ctx, time.Second)
		defer cancel()
		if err := pr.ping(ctx); err != nil && !pr.gone() {
			p.log.Warn().Int("pid", pr.pid).Err(err).Msg("plugin process stopped answering: restarting it")
			pr.kill("it stopped answering")
		}
	}()
}

// crashed records a crash; it reports whether that makes a crash loop,
// which leaves the plugin down.
func (p *plugin) crashed(reason string) (loop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.crashTotal++
	p.crashes = slices.DeleteFunc(append(p.crashes, now), func(t time.Time) bool { return now.Sub(t) > p.m.opts.CrashWindow })
	if len(p.crashes) >= p.m.opts.CrashLoop {
		p.down, p.downAt = reason, now
		return true
	}
	return false
}

func (p *plugin) health(ctx context.Context, timeout time.Duration) string {
	p.mu.Lock()
	g, down := p.gen, p.down
	p.mu.Unlock()
	if down != "" {
		return "down after a crash loop: " + down
	}
	if g == nil || !g.prog.model.health {
		return ""
	}
	for i := range g.slots {
		if pr := g.slots[i].Load(); pr != nil && !pr.gone() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return pr.health(ctx)
		}
	}
	return "restarting"
}

func (p *plugin) info() loader.Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := loader.Info{Name: p.name, State: loader.StateUnbuilt, Versions: []loader.VersionInfo{}}
	if g := p.gen; g != nil {
		i.Kind, i.State, i.Hash, i.Handlers = g.prog.kind, loader.StateReady, g.prog.key[:16], g.prog.model.handlers
		i.Versions = append(i.Versions, loader.VersionInfo{Hash: g.prog.key[:16], LoadedAt: g.at, Current: true})
	}
	if p.starting != nil {
		i.Building = true
		if p.gen == nil {
			i.State = loader.StateBuilding
		}
	}
	switch {
	case p.down != "":
		i.State, i.LastError = loader.StateFailed, "down after a crash loop: "+p.down
		at := p.downAt
		i.FailedAt = &at
	case p.failure != nil && p.gen == nil:
		// As in-process: the endpoint's words, and apart from them what
		// the plugin wrote (its stderr, a panic's value), which a
		// listing shows operators alone.
		i.State = loader.StateFailed
		i.LastError, i.LastErrorDetail = loader.ErrorText(p.failure)
		at := p.failedAt
		i.FailedAt = &at
	}
	return i
}

// generation is one build of a plugin running in one or more processes.
// Each slot is supervised: a process that exits unbidden is restarted
// with backoff until the plugin is in a crash loop or the generation
// retires.
type generation struct {
	p     *plugin
	prog  *program
	cfg   child.Config
	at    time.Time
	slots []atomic.Pointer[proc]
	stop  chan struct{} // closed at retirement
	once  sync.Once
}

func (g *generation) stopped() bool {
	select {
	case <-g.stop:
		return true
	default:
		return false
	}
}

// supervise keeps slot i served, starting from pr.
func (g *generation) supervise(i int, pr *proc) {
	p, opts := g.p, g.p.m.opts
	backoff := opts.MinBackoff
	for {
		select {
		case <-pr.exited:
		case <-g.stop:
			return // retire stops the processes
		}
		g.slots[i].CompareAndSwap(pr, nil)
		if g.stopped() {
			return
		}
		reason := pr.reason()
		if time.Since(pr.started) > opts.CrashWindow {
			backoff = opts.MinBackoff // it ran well for a while: not a loop
		}
		if p.crashed(reason) {
			p.log.Error().Int("pid", pr.pid).Str("reason", reason).Msg("plugin process crashed again: down until the plugin is reloaded")
			return
		}
		p.log.Error().Int("pid", pr.pid).Str("reason", reason).Dur("restart_in", backoff).Msg("plugin process crashed; restarting it")
		for {
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-g.stop:
				t.Stop()
				return
			}
			backoff = min(2*backoff, opts.MaxBackoff)
			next, err := startProc(p.m.ctx, p.name, g.prog, g.cfg, opts.StartTimeout, p.m.log)
			if err == nil {
				pr = next
				break
			}
			if g.stopped() {
				return
			}
			if p.crashed(err.Error()) {
				p.log.Error().Err(err).Msg("plugin process cannot restart: down until the plugin is reloaded")
				return
			}
			p.log.Error().Err(err).Dur("restart_in", backoff).Msg("plugin process failed to restart")
		}
		g.slots[i].Store(pr)
		if g.stopped() { // retired while it started: retire missed it
			pr.stop(opts.Grace)
			return
		}
	}
}

// retire stops the generation: no restarts, calls in flight complete,
// then each process is stopped.
func (g *generation) retire(grace time.Duration) {
	g.once.Do(func() { close(g.stop) })
	var wg sync.WaitGroup
	for i := range g.slots {
		if pr := g.slots[i].Load(); pr != nil {
			wg.Go(func() { pr.stop(grace) })
		}
	}
	wg.Wait()
}
