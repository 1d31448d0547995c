package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func open(t *testing.T, dir string, set func(*Options)) *Manager {
	t.Helper()
	opts := Options{Dir: dir, Workers: 2, QueueSize: 4, Retention: time.Hour, Log: zerolog.Nop()}
	if set != nil {
		set(&opts)
	}
	m, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wait(t *testing.T, m *Manager, id string, want State) Task {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		task, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if task.State == want {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s, want %s", id, task.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func result(v any) func(context.Context, func(float64)) ([]byte, error) {
	return func(context.Context, func(float64)) ([]byte, error) { return json.Marshal(v) }
}

// blocker runs until released or cancelled, reporting half progress.
func blocker(release <-chan struct{}) func(context.Context, func(float64)) ([]byte, error) {
	return func(ctx context.Context, progress func(float64)) ([]byte, error) {
		progress(0.5)
		select {
		case <-release:
			return json.Marshal("released")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func TestLifecycle(t *testing.T) {
	m := open(t, t.TempDir(), func(o *Options) { o.Timeout = 200 * time.Millisecond })
	defer m.Shutdown(context.Background())

	id, _ := m.Start("p", "sum", result(map[string]int{"sum": 3}))
	done := wait(t, m, id, Done)
	if string(done.Result) != `{"sum":3}` || done.Progress != 1 || done.Started == nil || done.Finished == nil || done.Location != "/_TASKS/"+id {
		t.Errorf("done = %+v", done)
	}

	id, _ = m.Start("p", "fail", func(context.Context, func(float64)) ([]byte, error) { return nil, errors.New("no disk") })
	if f := wait(t, m, id, Failed); f.Error != "no disk" {
		t.Errorf("failed = %+v", f)
	}

	id, _ = m.Start("p", "panic", func(context.Context, func(float64)) ([]byte, error) { panic("boom") })
	if f := wait(t, m, id, Failed); f.Error != "the task panicked: boom" {
		t.Errorf("panicked = %+v", f)
	}

	id, _ = m.Start("p", "slow", blocker(nil))
	if f := wait(t, m, id, Failed); f.Error != "timed out after 200ms" {
		t.Errorf("timed out = %+v", f)
	}

	release := make(chan struct{})
	id, _ = m.Start("p", "cancel me", blocker(release))
	wait(t, m, id, Running)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if r, _ := m.Get(id); r.Progress == 0.5 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("progress = %v, want 0.5", r.Progress)
		}
	}
	if _, err := m.Cancel(id); err != nil {
		t.Fatal(err)
	}
	wait(t, m, id, Cancelled)
	if _, err := m.Cancel(id); !errors.Is(err, ErrFinished) {
		t.Errorf("cancelling a finished task: %v", err)
	}
	if _, err := m.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}

// TestFileStoreMakesItsDir: the file store creates its directory, parents
// too (the server leaves it to the store: a PostgreSQL store has none).
func TestFileStoreMakesItsDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugind", "tasks")
	m := open(t, dir, nil)
	defer m.Shutdown(context.Background())
	id, _ := m.Start("p", "sum", result(map[string]int{"sum": 3}))
	wait(t, m, id, Done)
	if fi, err := os.Stat(filepath.Join(dir, "tasks.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("tasks.db: %v %v", fi, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("tasks.dir: %v %v, want mode 0700", fi, err)
	}
}

// TestActive: the running and queued tasks, oldest first; a finished
// one is gone from the list.
func TestActive(t *testing.T) {
	m := open(t, t.TempDir(), func(o *Options) { o.Workers, o.QueueSize = 1, 4 })
	defer m.Shutdown(context.Background())
	release := make(chan struct{})
	first, _ := m.Start("p", "first", blocker(release))
	wait(t, m, first, Running)
	second, _ := m.Start("q", "second", blocker(release))
	got := m.Active()
	if len(got) != 2 || got[0].ID != first || got[0].State != Running || got[1].ID != second || got[1].State != Queued {
		t.Fatalf("Active = %+v", got)
	}
	close(release)
	wait(t, m, first, Done)
	wait(t, m, second, Done)
	if got := m.Active(); len(got) != 0 {
		t.Errorf("Active after both finished = %+v", got)
	}
}

func TestQueueLimitAndQueuedCancel(t *testing.T) {
	m := open(t, t.TempDir(), func(o *Options) { o.Workers, o.QueueSize = 1, 1 })
	defer m.Shutdown(context.Background())
	release := make(chan struct{})
	running, _ := m.Start("p", "a", blocker(release))
	wait(t, m, running, Running)
	queued, err := m.Start("p", "b", blocker(release))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start("p", "c", blocker(release)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third task: %v, want ErrQueueFull", err)
	}
	m.Cancel(queued) // cancelled before it ever runs
	close(release)
	wait(t, m, running, Done)
	if q := wait(t, m, queued, Cancelled); q.Started != nil {
		t.Errorf("a task cancelled in the queue ran: %+v", q)
	}
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	m := open(t, dir, nil)
	done, _ := m.Start("p", "kept", result("kept"))
	wait(t, m, done, Done)
	release := make(chan struct{})
	running, _ := m.Start("p", "cut", blocker(release))
	wait(t, m, running, Running)

	// A crash: the store as it is now, opened by a new process.
	crashed := t.TempDir()
	copyFile(t, filepath.Join(dir, "tasks.db"), filepath.Join(crashed, "tasks.db"))
	after := open(t, crashed, nil)
	if got, err := after.Get(done); err != nil || got.State != Done || string(got.Result) != `"kept"` {
		t.Errorf("a finished task after a restart: %+v %v", got, err)
	}
	if got, _ := after.Get(running); got.State != Interrupted {
		t.Errorf("a task running at a crash: %+v", got)
	}
	after.Shutdown(context.Background())

	// A shutdown: the grace period passes, the task is interrupted.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	again := open(t, dir, nil)
	defer again.Shutdown(context.Background())
	if got, _ := again.Get(running); got.State != Interrupted || got.Error == "" {
		t.Errorf("a task running at shutdown: %+v", got)
	}
	if _, err := again.Start("p", "x", result(1)); err != nil {
		t.Errorf("a new manager does not take tasks: %v", err)
	}
}

func TestGracePeriodLetsTasksFinish(t *testing.T) {
	dir := t.TempDir()
	m := open(t, dir, nil)
	id, _ := m.Start("p", "quick", func(ctx context.Context, _ func(float64)) ([]byte, error) {
		time.Sleep(100 * time.Millisecond)
		return json.Marshal("finished in grace")
	})
	wait(t, m, id, Running)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.Shutdown(ctx)
	if _, err := m.Start("p", "late", result(1)); !errors.Is(err, ErrStopped) {
		t.Errorf("a stopped manager took a task: %v", err)
	}
	again := open(t, dir, nil)
	defer again.Shutdown(context.Background())
	if got, _ := again.Get(id); got.State != Done {
		t.Errorf("a task that finishes within the grace period: %+v", got)
	}
}

func TestRetention(t *testing.T) {
	m := open(t, t.TempDir(), func(o *Options) { o.Retention = time.Minute })
	defer m.Shutdown(context.Background())
	id, _ := m.Start("p", "old", result(1))
	wait(t, m, id, Done)
	m.expire(time.Now().Add(2 * time.Minute))
	if _, err := m.Get(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("an expired task is still served: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownDoesNotWaitForTasksThatIgnoreCancellation(t *testing.T) {
	dir := t.TempDir()
	m := open(t, dir, func(o *Options) { o.workerWait = 100 * time.Millisecond })
	stuck := make(chan struct{})
	defer close(stuck)
	id, _ := m.Start("p", "deaf", func(context.Context, func(float64)) ([]byte, error) { <-stuck; return nil, nil })
	wait(t, m, id, Running)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := m.Shutdown(ctx); err != nil || time.Since(began) > 5*time.Second {
		t.Fatalf("Shutdown: %v after %s", err, time.Since(began))
	}
	again := open(t, dir, nil)
	defer again.Shutdown(context.Background())
	if got, _ := again.Get(id); got.State != Interrupted {
		t.Errorf("a task that ignored cancellation: %+v", got)
	}
}
