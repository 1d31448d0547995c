// Package tasks runs plugins' background work (after plugincore): a
// request starts a named task and is answered at once; the client asks
// about it later at /_TASKS/{id}.
//
// Concurrency and the queue are bounded (a full queue is ErrQueueFull,
// 429); each task has a timeout; results are kept for a retention period.
// Finished tasks are stored in a bbolt file and survive restarts. Tasks
// still running at shutdown get a grace period, then are cancelled and
// recorded as interrupted; tasks a crash left queued or running are
// recorded as interrupted at the next start. A panic in a task is
// contained and recorded as its error.
package tasks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"

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
	ID         string          `json:"id"`
	Plugin     string          `json:"plugin"`
	Name       string          `json:"name"`
	State      State           `json:"state"`
	Progress   float64         `json:"progress"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      string          `json:"error,omitempty"`
	Created    time.Time       `json:"created_at"`
	Started    *time.Time      `json:"started_at,omitempty"`
	Finished   *time.Time      `json:"finished_at,omitempty"`
	ExpiresAt  *time.Time      `json:"expires_at,omitempty"`
	Location   string          `json:"location"`
	cancel     context.CancelFunc
	run        func(context.Context, func(float64)) ([]byte, error)
	cancelling bool
}

// Options configure a Manager.
type Options struct {
	Dir         string        // where tasks.db lives
	Workers     int           // tasks running at once
	QueueSize   int           // tasks waiting beyond those
	Timeout     time.Duration // per task; 0: none
	Retention   time.Duration // how long finished tasks are kept
	Log         zerolog.Logger
	OnFinish    func(Task) // optional: metrics, the bus
	sweepPeriod time.Duration
	workerWait  time.Duration // after the grace period, for tasks to heed cancellation
}

// Manager runs tasks. It is safe for concurrent use.
type Manager struct {
	opts  Options
	db    *bolt.DB
	queue chan *Task
	ctx   context.Context // ends at Shutdown: cancels running tasks
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu     sync.Mutex // guards tasks and closed
	tasks  map[string]*Task
	closed bool
}

var bucket = []byte("tasks")

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
	if opts.sweepPeriod <= 0 {
		opts.sweepPeriod = time.Minute
	}
	if opts.workerWait <= 0 {
		opts.workerWait = 5 * time.Second
	}
	db, err := bolt.Open(filepath.Join(opts.Dir, "tasks.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("tasks store: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	m := &Manager{opts: opts, db: db, queue: make(chan *Task, opts.QueueSize), ctx: ctx, stop: stop, tasks: make(map[string]*Task)}
	if err := m.recover(); err != nil {
		db.Close()
		return nil, err
	}
	for range opts.Workers {
		m.wg.Go(m.work)
	}
	m.wg.Go(m.sweep)
	return m, nil
}

// recover loads stored tasks; unfinished ones became interrupted when
// their process ended.
func (m *Manager) recover() error {
	now := time.Now()
	return m.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			var t Task
			if err := json.Unmarshal(v, &t); err != nil {
				return b.Delete(k)
			}
			if !t.State.finished() {
				t.State, t.Error = Interrupted, "the server stopped before the task finished"
				t.Finished = &now
				exp := now.Add(m.opts.Retention)
				t.ExpiresAt = &exp
				data, _ := json.Marshal(t)
				if err := b.Put(k, data); err != nil {
					return err
				}
			}
			m.tasks[t.ID] = &t
			return nil
		})
	})
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
	defer m.mu.Unlock()
	if m.closed {
		return "", ErrStopped
	}
	if cap(m.queue) > 0 && len(m.queue) == cap(m.queue) {
		return "", ErrQueueFull
	}
	// Stored before a worker can see it: later records never race it.
	if err := m.put(*t); err != nil {
		return "", fmt.Errorf("storing a queued task: %w", err)
	}
	select {
	case m.queue <- t: // only Start sends, under m.mu: a buffered queue has room
	default: // no queue, and no idle worker
		_ = m.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(id)) })
		return "", ErrQueueFull
	}
	m.tasks[id] = t
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
	if t.cancelling { // cancelled while queued
		m.mu.Unlock()
		m.finish(t, nil, context.Canceled)
		return
	}
	now := time.Now()
	t.State, t.Started, t.cancel = Running, &now, cancel
	m.mu.Unlock()
	_ = m.store(t)

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

// finish records a task's end: in the store first, then in memory, so a
// task seen finished is a task stored finished.
func (m *Manager) finish(t *Task, result []byte, err error) {
	now := time.Now()
	exp := now.Add(m.opts.Retention)
	m.mu.Lock()
	rec := *t
	switch {
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
	rec.Finished, rec.ExpiresAt, rec.cancel = &now, &exp, nil
	m.mu.Unlock()
	if err := m.put(rec); err != nil {
		m.opts.Log.Warn().Err(err).Str("task", t.ID).Msg("storing a finished task")
	}
	m.mu.Lock() // the outcome only: a worker may still read t.run
	t.State, t.Result, t.Progress, t.Error = rec.State, rec.Result, rec.Progress, rec.Error
	t.Finished, t.ExpiresAt, t.cancel = rec.Finished, rec.ExpiresAt, nil
	m.mu.Unlock()
	m.opts.Log.Info().Str("plugin", t.Plugin).Str("task", t.ID).Str("name", t.Name).Str("state", string(rec.State)).Msg("task finished")
	if m.opts.OnFinish != nil {
		m.opts.OnFinish(rec)
	}
}

// put writes a task's record.
func (m *Manager) put(t Task) error {
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return m.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(t.ID), data) })
}

// store writes t's current record.
func (m *Manager) store(t *Task) error {
	m.mu.Lock()
	rec := *t
	m.mu.Unlock()
	return m.put(rec)
}

// Get returns a task's record.
func (m *Manager) Get(id string) (Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[id]
	if !ok {
		return Task{}, ErrNotFound
	}
	return *t, nil
}

// Cancel cancels a queued or running task through its context.
func (m *Manager) Cancel(id string) (Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[id]
	switch {
	case !ok:
		return Task{}, ErrNotFound
	case t.State.finished():
		return *t, ErrFinished
	}
	t.cancelling = true
	if t.cancel != nil {
		t.cancel()
	}
	return *t, nil
}

// sweep forgets expired tasks.
func (m *Manager) sweep() {
	tick := time.NewTicker(m.opts.sweepPeriod)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case now := <-tick.C:
			m.expire(now)
		}
	}
}

func (m *Manager) expire(now time.Time) {
	m.mu.Lock()
	var gone []string
	for id, t := range m.tasks {
		if t.ExpiresAt != nil && now.After(*t.ExpiresAt) {
			delete(m.tasks, id)
			gone = append(gone, id)
		}
	}
	m.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	_ = m.db.Update(func(tx *bolt.Tx) error {
		for _, id := range gone {
			if err := tx.Bucket(bucket).Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Shutdown stops taking tasks, gives running ones until ctx ends, then
// cancels them (recorded interrupted), and closes the store.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	idle := make(chan struct{})
	go func() {
		for m.running() > 0 {
			select {
			case <-ctx.Done():
				close(idle)
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		close(idle)
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
	for _, t := range m.tasks {
		if !t.State.finished() {
			left = append(left, t)
		}
	}
	m.mu.Unlock()
	for _, t := range left { // ...and are interrupted too
		m.finish(t, nil, context.Canceled)
	}
	return m.db.Close()
}

func (m *Manager) running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, t := range m.tasks {
		if t.State == Running {
			n++
		}
	}
	return n
}
