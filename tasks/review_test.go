package tasks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
)

// The helper process of TestLockedStoreNamesItsHolder: it holds the store
// in TASKS_TEST_HOLD until its stdin closes.
func TestMain(m *testing.M) {
	if dsn := os.Getenv("TASKS_TEST_PGOWNER"); dsn != "" {
		pgOwner(dsn)
	}
	if dir := os.Getenv("TASKS_TEST_HOLD"); dir != "" {
		mgr, err := Open(Options{Dir: dir, Log: zerolog.Nop()})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
		mgr.Shutdown(context.Background())
		os.Exit(0)
	}
	code := m.Run()
	if sharedPG.s != nil {
		if err := sharedPG.s.Close(); err != nil {
			fmt.Println("pgtest:", err)
		}
	}
	os.Exit(code)
}

func boltDB(m *Manager) *bolt.DB { return m.store.(*boltStore).db }

// A store that refuses a write leaves the manager showing what it last
// accepted: a task whose end cannot be stored still reads as running, and
// a task that cannot be stored is not started.
func TestRefusedWritesChangeNothing(t *testing.T) {
	m := open(t, t.TempDir(), nil)
	defer m.Shutdown(context.Background())
	release := make(chan struct{})
	id, _ := m.Start("p", "cut off", blocker(release))
	wait(t, m, id, Running)

	boltDB(m).Close() // the disk goes away: every write fails from here
	close(release)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		m.mu.Lock()
		refused := m.live[id] != nil && m.live[id].unstored != nil
		m.mu.Unlock()
		if refused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the released task's end was not refused")
		}
	}
	if got, err := m.Get(id); err != nil || got.State != Running || got.Result != nil {
		t.Errorf("a task whose end the store refused: %+v %v; want it running, as stored", got, err)
	}
	if id, err := m.Start("p", "refused", result(1)); err == nil {
		t.Errorf("a task the store refused was started: %s", id)
	}
	m.mu.Lock()
	admitted := m.admitted
	m.mu.Unlock()
	if admitted != 0 {
		t.Errorf("refused starts hold %d places in the queue", admitted)
	}
}

// A result that is not JSON cannot be stored (nor served): the task fails.
func TestResultNotJSON(t *testing.T) {
	dir := t.TempDir()
	m := open(t, dir, nil)
	id, _ := m.Start("p", "garbled", func(context.Context, func(float64)) ([]byte, error) { return []byte("{not json"), nil })
	if got := wait(t, m, id, Failed); got.Error != "the task's result is not JSON" || got.Result != nil {
		t.Errorf("a task with a garbled result: %+v", got)
	}
	m.Shutdown(context.Background())
	again := open(t, dir, nil)
	defer again.Shutdown(context.Background())
	if got, _ := again.Get(id); got.State != Failed {
		t.Errorf("stored: %+v", got)
	}
}

// A task that ignores cancellation is recorded interrupted at shutdown;
// when it returns at last, nothing more happens: no second OnFinish, no
// write to the closed store.
func TestTaskThatIgnoresCancellationFinishesOnce(t *testing.T) {
	var logs syncBuffer
	var finished atomic.Int32
	m := open(t, t.TempDir(), func(o *Options) {
		o.workerWait = 50 * time.Millisecond
		o.Log = zerolog.New(&logs)
		o.OnFinish = func(Task) { finished.Add(1) }
	})
	stuck := make(chan struct{})
	id, _ := m.Start("p", "deaf", func(context.Context, func(float64)) ([]byte, error) { <-stuck; return []byte(`"late"`), nil })
	wait(t, m, id, Running)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	close(stuck)
	m.wg.Wait() // the worker has returned from the task, and finished with it
	if n := finished.Load(); n != 1 {
		t.Errorf("OnFinish called %d times, want once", n)
	}
	if strings.Contains(logs.String(), "storing a finished task") {
		t.Errorf("a late task wrote to the closed store:\n%s", logs.String())
	}
}

// Start writes outside the manager's lock: while it waits for the store,
// the manager answers.
func TestStartDoesNotHoldTheLockAcrossAWrite(t *testing.T) {
	m := open(t, t.TempDir(), nil)
	defer m.Shutdown(context.Background())
	done, _ := m.Start("p", "done", result(1))
	wait(t, m, done, Done)

	// Another writer holds bbolt's write lock, as an fsync would.
	holding, release := make(chan struct{}), make(chan struct{})
	go boltDB(m).Update(func(*bolt.Tx) error { close(holding); <-release; return nil })
	<-holding
	started := make(chan error, 1)
	go func() { _, err := m.Start("p", "waits", result(2)); started <- err }()
	waitForStack(t, "(*DB).beginRWTx", "tasks.(*Manager).Start")

	answered := make(chan error, 1)
	go func() { _, err := m.Get(done); answered <- err }()
	select {
	case err := <-answered:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Get waited for Start's write")
		defer func() { <-answered }()
	}
	close(release)
	if err := <-started; err != nil {
		t.Error(err)
	}
}

// waitForStack waits until a goroutine's stack holds every one of frames.
func waitForStack(t *testing.T, frames ...string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		n := runtime.Stack(buf, true)
		for g := range bytes.SplitSeq(buf[:n], []byte("\n\n")) {
			all := true
			for _, f := range frames {
				all = all && bytes.Contains(g, []byte(f))
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine in %v", frames)
		}
	}
}

// At most MaxFinished finished tasks are kept, the oldest dropped first;
// a restart with a lower cap trims at once.
func TestMaxFinished(t *testing.T) {
	dir := t.TempDir()
	m := open(t, dir, func(o *Options) { o.MaxFinished = 3 })
	var ids []string
	for i := range 5 {
		id, err := m.Start("p", "n", result(i))
		if err != nil {
			t.Fatal(err)
		}
		wait(t, m, id, Done)
		ids = append(ids, id)
	}
	for i, id := range ids {
		_, err := m.Get(id)
		if kept := i >= 2; kept != (err == nil) {
			t.Errorf("task %d of 5 with a cap of 3: %v", i, err)
		}
	}
	m.Shutdown(context.Background())

	again := open(t, dir, func(o *Options) { o.MaxFinished = 1 })
	defer again.Shutdown(context.Background())
	for i, id := range ids {
		_, err := again.Get(id)
		if kept := i == 4; kept != (err == nil) {
			t.Errorf("task %d after a restart with a cap of 1: %v", i, err)
		}
	}
}

// A store another process holds is refused with that process's pid.
func TestLockedStoreNamesItsHolder(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TASKS_TEST_HOLD="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	timer.Stop()
	if line != "ready\n" {
		t.Fatalf("the holder process: %q", line)
	}

	_, err = Open(Options{Dir: dir, Log: zerolog.Nop(), lockWait: 100 * time.Millisecond})
	var locked *LockedError
	want := fmt.Sprintf("another plugind (pid %d) is using %s", cmd.Process.Pid, dir)
	if !errors.As(err, &locked) || err.Error() != want {
		t.Errorf("opening a held store: %v, want %q", err, want)
	}

	stdin.Close() // the holder shuts down and lets go
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the holder process: %v", err)
	}
	m, err := Open(Options{Dir: dir, Log: zerolog.Nop(), lockWait: 5 * time.Second})
	if err != nil {
		t.Fatalf("opening a released store: %v", err)
	}
	m.Shutdown(context.Background())
}

// syncBuffer is a bytes.Buffer for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
