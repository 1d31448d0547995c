// Package tasks runs plugins' background work (after plugincore): a
// request starts a named task and is answered at once; the client asks
// about it later at /_TASKS/{id}.
//
// Concurrency and the queue are bounded (a full queue is ErrQueueFull,
// 429); each task has a timeout; finished tasks are kept for a retention
// period, and at most MaxFinished of them (the oldest go first; in
// PostgreSQL both hold from each sweep, once a minute per replica). Records
// live in a store and survive restarts: a bbolt file, one process's, or a
// PostgreSQL database shared by replicas, any of which answers for and
// cancels any task. What a Manager reports is what the store accepted: a
// state whose write failed is not shown. Tasks still running at shutdown get a grace period, then
// are cancelled and recorded as interrupted; tasks a crash left queued or
// running are recorded as interrupted at the next start. A panic in a task
// is contained and recorded as its error. Every task finishes exactly
// once, even one that ignores its cancelled context.
package tasks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/sdk"
)

// State is where a task is in its life.
type State string

const (
	Queued      State = "queued"
	Running     State = "running"
	Done        State = "done"
	Failed      State = "failed"
	Cancelled   State = "cancelled"
	Interrupted State = "interrupted" // by a shutdown or a crash
)

func (s State) finished() bool { return s != Queued && s != Running }

// Errors.
var (
	ErrQueueFull = sdk.ErrQueueFull
	ErrNotFound  = errors.New("tasks: no such task")
	ErrFinished  = errors.New("tasks: the task has finished")
	ErrStopped   = errors.New("tasks: the task runner is stopped")
)

// Task is a task's public record.
type Task struct {
	ID        string          `json:"id"`
	Plugin    string          `json:"plugin"`
	Name      string          `json:"name"`
	State     State           `json:"state"`
	Progress  float64         `json:"progress"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     string          `json:"error,omitempty"`
	Created   time.Time       `json:"created_at"`
	Started   *time.Time      `json:"started_at,omitempty"`
	Finished  *time.Time      `json:"finished_at,omitempty"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
	Location  string          `json:"location"`

	// This manager's bookkeeping, under Manager.mu.
	cancel     context.CancelFunc
	run        func(context.Context, func(float64)) ([]byte, error)
	cancelling bool
	ended      bool  // its outcome is decided: it finishes once
	unstored   *Task // its finished record, which the store has not accepted yet
}

// record is t's public part.
func (t *Task) record() Task {
	return Task{ID: t.ID, Plugin: t.Plugin, Name: t.Name, State: t.State, Progress: t.Progress,
		Result: t.Result, Error: t.Error, Created: t.Created, Started: t.Started,
		Finished: t.Finished, ExpiresAt: t.ExpiresAt, Location: t.Location}
}

// Active lists this manager's tasks that are queued or running (not
// those of other replicas sharing its store), oldest first.
func (m *Manager) Active() []Task {
	m.mu.Lock()
	out := make([]Task, 0, len(m.live))
	for _, t := range m.live {
		if t.State == Queued || t.State == Running {
			out = append(out, t.record())
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Task) int { return a.Created.Compare(b.Created) })
	return out
}

// DefaultMaxFinished is how many finished tasks are kept when
// Options.MaxFinished is not set.
const DefaultMaxFinished = 1000

// storeTimeout bounds one store operation: a database that does not
// answer (a partition, a lock) must not hold a request, a worker or
// Shutdown for ever.
const storeTimeout = 10 * time.Second

// DefaultLease is Options.Lease when not set.
const DefaultLease = 15 * time.Second

// Options configure a Manager.
type Options struct {
	Store       string        // "bolt" (default): a file in Dir; "postgres": a database at DSN, shared by replicas
	Dir         string        // bolt: where tasks.db lives, created if missing; postgres: unused
	DSN         string        // the PostgreSQL database
	Lease       time.Duration // postgres: a dead replica's tasks read interrupted within it; 0: DefaultLease
	Workers     int           // tasks running at once
	QueueSize   int           // tasks waiting beyond those
	Timeout     time.Duration // per task; 0: none
	Retention   time.Duration // how long finished tasks are kept
	MaxFinished int           // finished tasks kept at most, the oldest dropped first; 0: DefaultMaxFinished
	Log         zerolog.Logger
	OnFinish    func(Task) // optional: metrics, the bus
	sweepPeriod time.Duration
	workerWait  time.Duration // after the grace period, for tasks to heed cancellation
	lockWait    time.Duration // for another process to release the store
	noListen    bool          // postgres: cancellations come with heartbeats only
}

// store keeps task records.
type store interface {
	// put writes a record; a finished one may push the oldest finished
	// records beyond keep out (bbolt's does, in the same transaction;
	// PostgreSQL's leaves them to expire).
	put(ctx context.Context, rec Task, keep int) error
	// get reads a record; ErrNotFound when there is none.
	get(ctx context.Context, id string) (Task, error)
	// cancel asks for a task another manager runs to be cancelled;
	// ErrFinished (with the record) when it has finished.
	cancel(ctx context.Context, id string) (Task, error)
	// expire deletes finished records past their expiry, and the oldest
	// beyond keep.
	expire(ctx context.Context, now time.Time, keep int) error
	// recover records as interrupted what a previous process left
	// unfinished.
	recover(ctx context.Context, now time.Time, retention time.Duration, keep int) error
	close() error
}

// Manager runs tasks. It is safe for concurrent use.
type Manager struct {
	opts   Options
	queue  chan *Task // holds every admitted task: sending never blocks
	ctx    context.Context
	stop   context.CancelFunc // ends ctx at Shutdown: cancels running tasks
	wg     sync.WaitGroup     // workers and the sweeper
	starts sync.WaitGroup     // Start calls admitted before Shutdown

	mu       sync.Mutex       // guards what follows and live tasks' fields
	live     map[string]*Task // this manager's tasks until their end is stored
	admitted int              // tasks queued or running, or being stored as queued
	closed   bool

	storeMu     sync.RWMutex // writes share it; closing the store takes it whole
	store       store
	storeClosed bool
}

// Open opens (or creates) the store, marks what a previous process left
// unfinished as interrupted, and starts the workers.
func Open(opts Options) (*Manager, error) {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.QueueSize < 0 {
		opts.QueueSize = 0
	}
	if opts.Retention <= 0 {
		opts.Retention = time.Hour
	}
	if opts.MaxFinished <= 0 {
		opts.MaxFinished = DefaultMaxFinished
	}
	if opts.sweepPeriod <= 0 {
		opts.sweepPeriod = time.Minute
	}
	if opts.workerWait <= 0 {
		opts.workerWait = 5 * time.Second
	}
	if opts.lockWait <= 0 {
		opts.lockWait = 5 * time.Second
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	var st store
	switch opts.Store {
	case "", "bolt":
		b, err := openBolt(opts.Dir, opts.lockWait)
		if err != nil {
			return nil, err
		}
		st = b
	case "postgres":
		p, err := openPostgres(context.Background(), opts.DSN, opts.Lease, opts.Log)
		if err != nil {
			return nil, err
		}
		st = p
	default:
		return nil, fmt.Errorf("tasks: no store %q (bolt or postgres)", opts.Store)
	}
	rctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a schema lock held for ever
	defer cancel()
	if err := st.recover(rctx, time.Now(), opts.Retention, opts.MaxFinished); err != nil {
		st.close()
		return nil, fmt.Errorf("tasks store: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	m := &Manager{
		opts: opts, store: st, ctx: ctx, stop: stop,
		queue: make(chan *Task, opts.Workers+opts.QueueSize),
		live:  make(map[string]*Task),
	}
	for range opts.Workers {
		m.wg.Go(m.work)
	}
	m.wg.Go(m.sweep)
	if p, ok := st.(*pgStore); ok {
		m.wg.Go(func() { m.keepLeases(p) })
		if !opts.noListen {
			m.wg.Go(func() { p.listen(m.ctx, m.cancelHere) })
		}
	}
	return m, nil
}

// For returns the sdk.Tasks of plugin.
func (m *Manager) For(plugin string) sdk.Tasks { return pluginTasks{m, plugin} }

type pluginTasks struct {
	m      *Manager
	plugin string
}

func (p pluginTasks) Start(ctx context.Context, name string, run func(context.Context, func(float64)) ([]byte, error)) (string, error) {
	return p.m.Start(p.plugin, name, run)
}

// Start queues a task and returns its id; ErrQueueFull when the queue is.
func (m *Manager) Start(plugin, name string, run func(context.Context, func(float64)) ([]byte, error)) (string, error) {
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw[:])
	t := &Task{ID: id, Plugin: plugin, Name: name, State: Queued, Created: time.Now(), Location: sdk.TaskLocation(id), run: run}
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return "", ErrStopped
	case m.admitted >= m.opts.Workers+m.opts.QueueSize:
		m.mu.Unlock()
		return "", ErrQueueFull
	}
	m.admitted++ // its place is held while it is stored
	m.starts.Add(1)
	defer m.starts.Done()
	m.mu.Unlock()

	// Stored before a worker can see it, so later records never race it,
	// and outside m.mu: a write waits for the disk.
	if err := m.write(t.record()); err != nil {
		m.mu.Lock()
		m.admitted--
		m.mu.Unlock()
		return "", fmt.Errorf("storing a queued task: %w", err)
	}
	m.mu.Lock()
	m.live[id] = t
	m.queue <- t
	m.mu.Unlock()
	return id, nil
}

func (m *Manager) work() {
	for {
		select {
		case <-m.ctx.Done():
			return
		case t := <-m.queue:
			m.execute(t)
		}
	}
}

func (m *Manager) execute(t *Task) {
	ctx, cancel := context.WithCancel(m.ctx)
	if m.opts.Timeout > 0 {
		cancel()
		ctx, cancel = context.WithTimeout(m.ctx, m.opts.Timeout)
	}
	defer cancel()
	m.mu.Lock()
	switch {
	case t.ended: // recorded interrupted by Shutdown
		m.mu.Unlock()
		return
	case t.cancelling, m.ctx.Err() != nil: // cancelled in the queue, or stopping
		m.mu.Unlock()
		m.finish(t, nil, context.Canceled)
		return
	}
	now := time.Now()
	rec := t.record()
	rec.State, rec.Started = Running, &now
	m.mu.Unlock()
	if err := m.write(rec); err != nil {
		m.finish(t, nil, fmt.Errorf("storing the running task: %w", err))
		return
	}
	m.mu.Lock()
	t.State, t.Started, t.cancel = Running, &now, cancel
	if t.cancelling { // while it was being stored
		cancel()
	}
	m.mu.Unlock()

	progress := func(p float64) {
		m.mu.Lock()
		t.Progress = min(max(p, 0), 1)
		m.mu.Unlock()
	}
	var result []byte
	err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("the task panicked: %v", v)
				m.opts.Log.Error().Str("plugin", t.Plugin).Str("task", t.ID).Str("stack", string(debug.Stack())).Msg("task panicked")
			}
		}()
		result, err = t.run(ctx, progress)
		return err
	}()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // finished only because it was stopped
	}
	m.finish(t, result, err)
}

// finish decides a task's outcome, once: a later call (a task that
// ignored cancellation returning after Shutdown recorded it interrupted)
// does nothing.
func (m *Manager) finish(t *Task, result []byte, err error) {
	now := time.Now()
	exp := now.Add(m.opts.Retention)
	m.mu.Lock()
	if t.ended {
		m.mu.Unlock()
		return
	}
	t.ended = true
	m.admitted--
	rec := t.record()
	switch {
	case err == nil && len(result) > 0 && !json.Valid(result):
		rec.State, rec.Error = Failed, "the task's result is not JSON"
	case err == nil:
		rec.State, rec.Result, rec.Progress = Done, result, 1
	case t.cancelling:
		rec.State, rec.Error = Cancelled, "cancelled"
	case m.ctx.Err() != nil:
		rec.State, rec.Error = Interrupted, "the server stopped before the task finished"
	case errors.Is(err, context.DeadlineExceeded):
		rec.State, rec.Error = Failed, fmt.Sprintf("timed out after %s", m.opts.Timeout)
	default:
		rec.State, rec.Error = Failed, err.Error()
	}
	rec.Finished, rec.ExpiresAt = &now, &exp
	m.mu.Unlock()
	m.record(t, rec)
}

// record stores a task's finished record, then forgets the task: a task
// seen finished is a task stored finished. When the store refuses, the
// task keeps its last stored state and the sweeper tries again.
func (m *Manager) record(t *Task, rec Task) {
	err := m.write(rec)
	if errors.Is(err, errSuperseded) { // its end is recorded: forget it
		m.opts.Log.Warn().Str("plugin", t.Plugin).Str("task", t.ID).Str("state", string(rec.State)).Msg("the task was recorded interrupted meanwhile: its lease had run out")
		m.mu.Lock()
		t.unstored, t.cancel = nil, nil
		delete(m.live, t.ID)
		m.mu.Unlock()
		return
	}
	if err != nil {
		m.opts.Log.Error().Err(err).Str("plugin", t.Plugin).Str("task", t.ID).Str("state", string(rec.State)).Msg("storing a finished task; will retry")
		m.mu.Lock()
		t.unstored = &rec
		m.mu.Unlock()
		return
	}
	m.mu.Lock()
	t.unstored, t.cancel = nil, nil
	delete(m.live, t.ID)
	m.mu.Unlock()
	m.opts.Log.Info().Str("plugin", t.Plugin).Str("task", t.ID).Str("name", t.Name).Str("state", string(rec.State)).Msg("task finished")
	if m.opts.OnFinish != nil {
		m.opts.OnFinish(rec)
	}
}

// retry stores the finished records the store refused before.
func (m *Manager) retry() {
	type unstored struct {
		t   *Task
		rec Task
	}
	var left []unstored
	m.mu.Lock()
	for _, t := range m.live {
		if t.unstored != nil {
			left = append(left, unstored{t, *t.unstored})
		}
	}
	m.mu.Unlock()
	for _, u := range left {
		m.record(u.t, u.rec)
	}
}

// write puts a record in the store, unless the store is closed.
func (m *Manager) write(rec Task) error {
	m.storeMu.RLock()
	defer m.storeMu.RUnlock()
	if m.storeClosed {
		return ErrStopped
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return m.store.put(ctx, rec, m.opts.MaxFinished)
}

// Get returns a task's record.
func (m *Manager) Get(id string) (Task, error) {
	m.mu.Lock()
	t, ok := m.live[id]
	var rec Task
	if ok {
		rec = t.record()
	}
	m.mu.Unlock()
	if ok {
		return rec, nil
	}
	m.storeMu.RLock()
	defer m.storeMu.RUnlock()
	if m.storeClosed {
		return Task{}, ErrStopped
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return m.store.get(ctx, id)
}

// Cancel cancels a queued or running task through its context.
func (m *Manager) Cancel(id string) (Task, error) {
	m.mu.Lock()
	t, ok := m.live[id]
	if ok {
		t.cancelling = true
		if t.cancel != nil {
			t.cancel()
		}
		rec := t.record()
		m.mu.Unlock()
		return rec, nil
	}
	m.mu.Unlock()
	m.storeMu.RLock()
	defer m.storeMu.RUnlock()
	if m.storeClosed {
		return Task{}, ErrStopped
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	return m.store.cancel(ctx, id)
}

// cancelHere cancels a task if this manager runs it.
func (m *Manager) cancelHere(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.live[id]; ok && !t.ended {
		t.cancelling = true
		if t.cancel != nil {
			t.cancel()
		}
	}
}

// keepLeases renews the leases of this manager's tasks in a shared store
// (their progress rides along), picks up cancellations a lost
// notification did not bring, and records as interrupted the tasks of
// replicas that stopped renewing theirs.
func (m *Manager) keepLeases(p *pgStore) {
	// A lease is renewed for half the period: a dead owner's expires at
	// most Lease/2 after its death, and is swept within Lease/4 more.
	beat := min(time.Second, m.opts.Lease/4)
	sweepEvery := max(1, int(m.opts.Lease/4/beat)) // beats
	tick := time.NewTicker(beat)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
			m.heartbeat(p)
			if n%sweepEvery == 0 {
				ctx, stop := context.WithTimeout(m.ctx, storeTimeout)
				swept, err := p.sweepLeases(ctx)
				stop()
				if err != nil && m.ctx.Err() == nil {
					m.opts.Log.Warn().Err(err).Msg("interrupting the tasks of stopped replicas")
				} else if swept > 0 {
					m.opts.Log.Warn().Int("tasks", swept).Msg("recorded interrupted the tasks of a stopped replica")
				}
			}
		}
	}
}

func (m *Manager) heartbeat(p *pgStore) {
	progress := make(map[string]float64)
	m.mu.Lock()
	for id, t := range m.live {
		if !t.ended {
			progress[id] = t.Progress
		}
	}
	m.mu.Unlock()
	if len(progress) == 0 {
		return
	}
	m.storeMu.RLock()
	defer m.storeMu.RUnlock()
	if m.storeClosed {
		return
	}
	ctx, stop := context.WithTimeout(m.ctx, storeTimeout)
	defer stop()
	cancel, lost, err := p.heartbeat(ctx, progress)
	if err != nil {
		if m.ctx.Err() == nil {
			m.opts.Log.Warn().Err(err).Msg("renewing task leases")
		}
		return
	}
	for _, id := range append(cancel, lost...) { // a lost task's late end is refused
		m.cancelHere(id)
	}
}

// sweep forgets expired tasks and retries refused writes.
func (m *Manager) sweep() {
	tick := time.NewTicker(m.opts.sweepPeriod)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case now := <-tick.C:
			m.expire(now)
			m.retry()
		}
	}
}

func (m *Manager) expire(now time.Time) {
	m.storeMu.RLock()
	defer m.storeMu.RUnlock()
	if m.storeClosed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := m.store.expire(ctx, now, m.opts.MaxFinished); err != nil {
		m.opts.Log.Warn().Err(err).Msg("deleting expired tasks")
	}
}

// Shutdown stops taking tasks, gives running ones until ctx ends, then
// cancels them (recorded interrupted), and closes the store.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.starts.Wait() // tasks being started are queued (or refused) by now
	idle := make(chan struct{})
	go func() {
		defer close(idle)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for m.running() > 0 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	<-idle
	m.stop() // cancels what still runs; queued tasks stay queued...
	// A task that ignores its context keeps its worker: wait a moment, not
	// for ever, then record it interrupted all the same.
	workers := make(chan struct{})
	go func() { m.wg.Wait(); close(workers) }()
	select {
	case <-workers:
	case <-time.After(m.opts.workerWait):
		m.opts.Log.Warn().Msg("tasks ignore their cancelled context; recording them interrupted")
	}
	m.mu.Lock()
	var left []*Task
	for _, t := range m.live {
		if !t.ended {
			left = append(left, t)
		}
	}
	m.mu.Unlock()
	for _, t := range left { // ...and are interrupted too
		m.finish(t, nil, context.Canceled)
	}
	m.retry()
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	if m.storeClosed {
		return nil
	}
	m.storeClosed = true
	return m.store.close()
}

// running counts this manager's running tasks.
func (m *Manager) running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, t := range m.live {
		if t.State == Running && !t.ended {
			n++
		}
	}
	return n
}
