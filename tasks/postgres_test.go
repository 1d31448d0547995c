package tasks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/pgtest"
)

const testLease = 2 * time.Second

// sharedPG is the PostgreSQL server of this package's tests: started on
// first use, stopped by TestMain.
var sharedPG struct {
	once sync.Once
	s    *pgtest.Server
	err  error
}

// pgDatabase is a new database on the shared server.
func pgDatabase(t *testing.T) string {
	t.Helper()
	sharedPG.once.Do(func() { sharedPG.s, sharedPG.err = pgtest.New() })
	if sharedPG.err != nil {
		t.Fatalf("pgtest: %v", sharedPG.err)
	}
	return sharedPG.s.NewDatabase(t)
}

func openPG(t *testing.T, dsn string, set func(*Options)) *Manager {
	t.Helper()
	return open(t, "", func(o *Options) {
		o.Store, o.DSN, o.Lease = "postgres", dsn, testLease
		if set != nil {
			set(o)
		}
	})
}

// pgOwner is the helper process of TestPostgresKilledReplica: it starts a
// task that runs until the process dies, prints its id, and waits.
func pgOwner(dsn string) {
	m, err := Open(Options{Store: "postgres", DSN: dsn, Lease: testLease, Log: zerolog.Nop()})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	id, err := m.Start("p", "cut short", blocker(nil))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got, _ := m.Get(id); got.State == Running {
			break
		} else if time.Now().After(deadline) {
			fmt.Println("error: not running:", got.State)
			os.Exit(1)
		}
	}
	fmt.Println(id)
	bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// Two replicas on one database: either answers for the other's tasks, and
// a DELETE through one cancels a task the other runs, at once.
func TestPostgresReplicasShareTasks(t *testing.T) {
	dsn := pgDatabase(t)
	a, b := openPG(t, dsn, nil), openPG(t, dsn, nil)
	defer a.Shutdown(context.Background())
	defer b.Shutdown(context.Background())

	id, err := a.Start("p", "sum", result(map[string]int{"sum": 3}))
	if err != nil {
		t.Fatal(err)
	}
	wait(t, a, id, Done)
	if got := wait(t, b, id, Done); string(got.Result) != `{"sum":3}` || got.Plugin != "p" || got.Location != "/_TASKS/"+id {
		t.Errorf("a finished task read through the other replica: %+v", got)
	}
	if _, err := b.Cancel(id); !errors.Is(err, ErrFinished) {
		t.Errorf("cancelling a finished task through the other replica: %v", err)
	}
	if _, err := b.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown id: %v", err)
	}
	if _, err := b.Cancel("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancelling an unknown id: %v", err)
	}

	cancelled := make(chan time.Time, 1)
	id, _ = a.Start("p", "long", func(ctx context.Context, progress func(float64)) ([]byte, error) {
		progress(0.5)
		<-ctx.Done()
		cancelled <- time.Now()
		return nil, ctx.Err()
	})
	wait(t, a, id, Running)
	if got := wait(t, b, id, Running); got.Started == nil {
		t.Errorf("a running task read through the other replica: %+v", got)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if got, _ := b.Get(id); got.Progress == 0.5 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("progress read through the other replica: %v, want 0.5", got.Progress)
		}
	}
	asked := time.Now()
	if got, err := b.Cancel(id); err != nil || got.State != Running {
		t.Fatalf("cancelling through the other replica: %+v %v", got, err)
	}
	select {
	case at := <-cancelled:
		t.Logf("cancellation reached the other replica's task in %s", at.Sub(asked))
	case <-time.After(time.Second):
		t.Fatal("a task was not cancelled within 1s of a DELETE through another replica")
	}
	wait(t, b, id, Cancelled)
}

// Without notifications (a listening connection lost), a cancellation
// reaches the replica running the task with its next heartbeat.
func TestPostgresCancellationWithoutNotifications(t *testing.T) {
	dsn := pgDatabase(t)
	a := openPG(t, dsn, func(o *Options) { o.noListen = true })
	b := openPG(t, dsn, nil)
	defer a.Shutdown(context.Background())
	defer b.Shutdown(context.Background())
	cancelled := make(chan time.Time, 1)
	id, _ := a.Start("p", "long", func(ctx context.Context, _ func(float64)) ([]byte, error) {
		<-ctx.Done()
		cancelled <- time.Now()
		return nil, ctx.Err()
	})
	wait(t, a, id, Running)
	asked := time.Now()
	if _, err := b.Cancel(id); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-cancelled:
		t.Logf("cancellation reached the other replica's task in %s, by heartbeat", at.Sub(asked))
	case <-time.After(3 * time.Second):
		t.Fatal("a task was not cancelled within 3s (a heartbeat is at most 1s) of a DELETE through another replica")
	}
	wait(t, b, id, Cancelled)
}

// A replica killed with SIGKILL cannot record its tasks' end: another
// records them interrupted once their lease runs out.
func TestPostgresKilledReplica(t *testing.T) {
	dsn := pgDatabase(t)
	survivor := openPG(t, dsn, nil) // creates the schema before the owner starts
	defer survivor.Shutdown(context.Background())

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TASKS_TEST_PGOWNER="+dsn)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	timer.Stop()
	id := line[:max(len(line)-1, 0)]
	if got, err := survivor.Get(id); err != nil || got.State != Running {
		t.Fatalf("the owner's task: %+v %v (owner said %q)", got, err, line)
	}

	cmd.Process.Kill() // SIGKILL: no shutdown, no last write
	killed := time.Now()
	cmd.Wait()
	got := wait(t, survivor, id, Interrupted)
	took := time.Since(killed)
	t.Logf("a killed replica's task read interrupted %s after the kill (lease %s)", took, testLease)
	if took > testLease {
		t.Errorf("a killed replica's task read interrupted after %s, more than the lease (%s)", took, testLease)
	}
	if got.Error == "" || got.Finished == nil || got.ExpiresAt == nil {
		t.Errorf("the interrupted record: %+v", got)
	}
}

// The cap and retention hold across replicas, from a sweep: finishing a
// task deletes none (a DELETE per finish on every replica), one replica's
// sweep trims the fleet's.
func TestPostgresCapAndRetentionAreFleetWide(t *testing.T) {
	dsn := pgDatabase(t)
	cap3 := func(o *Options) { o.MaxFinished, o.sweepPeriod = 3, time.Hour } // sweeps are this test's
	a, b := openPG(t, dsn, cap3), openPG(t, dsn, cap3)
	defer a.Shutdown(context.Background())
	defer b.Shutdown(context.Background())
	var ids []string
	for i, m := range []*Manager{a, b, a, b, a} {
		id, err := m.Start("p", "n", result(i))
		if err != nil {
			t.Fatal(err)
		}
		wait(t, m, id, Done)
		ids = append(ids, id)
	}
	for i, id := range ids {
		if _, err := b.Get(id); err != nil {
			t.Errorf("task %d of 5 with a cap of 3, before a sweep: %v (trimmed when it finished?)", i, err)
		}
	}
	a.expire(time.Now())
	for _, m := range []*Manager{a, b} {
		for i, id := range ids {
			if _, err := m.Get(id); (i >= 2) != (err == nil) {
				t.Errorf("task %d of 5 with a cap of 3 across two replicas, after a sweep: %v", i, err)
			}
		}
	}
	b.expire(time.Now().Add(2 * time.Hour)) // past the retention
	for _, id := range ids[2:] {
		if _, err := a.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("a task one replica expired is still served by the other: %v", err)
		}
	}
}

// Replicas starting together create the schema once, without errors.
func TestPostgresConcurrentSchemaCreation(t *testing.T) {
	dsn := pgDatabase(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	managers := make([]*Manager, n)
	for i := range n {
		wg.Go(func() {
			managers[i], errs[i] = Open(Options{Store: "postgres", DSN: dsn, Lease: testLease, Log: zerolog.Nop()})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		} else {
			defer managers[i].Shutdown(context.Background())
		}
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, `SELECT version FROM plugind_schema WHERE component = 'tasks'`).Scan(&v); err != nil || v != len(pgMigrations) {
		t.Errorf("schema version %d %v, want %d", v, err, len(pgMigrations))
	}
}

// A finished record the store refuses (the database is down) leaves the
// task at its stored state; once the database is back, the sweeper stores
// it, and OnFinish runs once.
func TestRefusedEndIsRetried(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	var finished atomic.Int32
	m := openPG(t, dsn, func(o *Options) {
		o.Lease, o.sweepPeriod = time.Minute, 50*time.Millisecond
		o.OnFinish = func(Task) { finished.Add(1) }
	})
	defer m.Shutdown(context.Background())
	release := make(chan struct{})
	id, _ := m.Start("p", "outlives an outage", blocker(release))
	wait(t, m, id, Running)

	pg.Stop(t)
	close(release)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		m.mu.Lock()
		refused := m.live[id] != nil && m.live[id].unstored != nil
		m.mu.Unlock()
		if refused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the task's end was not refused by a stopped database")
		}
	}
	if got, err := m.Get(id); err != nil || got.State != Running {
		t.Errorf("a task whose end the store refused: %+v %v; want it running, as stored", got, err)
	}

	pg.Restart(t)
	if got := wait(t, m, id, Done); string(got.Result) != `"released"` {
		t.Errorf("the retried record: %+v", got)
	}
	if n := finished.Load(); n != 1 {
		t.Errorf("OnFinish called %d times, want once", n)
	}
}
