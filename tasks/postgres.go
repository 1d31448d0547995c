package tasks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
)

// pgStore keeps task records in PostgreSQL, shared by every manager (every
// replica) on the database: any of them answers for any task. The manager
// that runs a task owns its row and renews a lease on it; when the lease
// runs out (the replica died), any manager records the task interrupted.
// Cancelling a task another manager runs sets a flag on its row and
// notifies the owner (LISTEN/NOTIFY); owners also read the flag when they
// renew their leases, should a notification be lost.
type pgStore struct {
	pool      *pgxpool.Pool
	owner     string        // this manager, in rows' owner column
	lease     time.Duration // a dead owner's tasks read interrupted within it
	retention time.Duration // of the tasks sweepLeases interrupts
	log       zerolog.Logger
}

// errSuperseded: another manager recorded the task's end (its lease had
// run out), so its owner's late records are refused.
var errSuperseded = errors.New("tasks: another replica recorded the task interrupted (its lease had run out)")

// cancelChannel carries the ids of tasks whose cancellation was requested.
const cancelChannel = "plugind_tasks_cancel"

// pgMigrationLock is the pg_advisory_xact_lock key that serialises schema
// changes by managers starting together ("plugind" in ASCII).
const pgMigrationLock = 0x706c7567696e64

// pgMigrations are the schema's versions, applied in order, each once.
var pgMigrations = [][]string{
	{
		`CREATE TABLE plugind_tasks (
			id               text PRIMARY KEY,
			state            text NOT NULL,
			record           json NOT NULL,
			progress         double precision NOT NULL DEFAULT 0,
			owner            text NOT NULL,
			lease_until      timestamptz,
			cancel_requested boolean NOT NULL DEFAULT false,
			finished_at      timestamptz,
			expires_at       timestamptz
		)`,
		`CREATE INDEX plugind_tasks_finished ON plugind_tasks (finished_at, id) WHERE finished_at IS NOT NULL`,
		`CREATE INDEX plugind_tasks_lease ON plugind_tasks (lease_until) WHERE finished_at IS NULL`,
	},
}

func openPostgres(ctx context.Context, dsn string, lease time.Duration, log zerolog.Logger) (*pgStore, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("tasks.dsn: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("tasks.dsn: connecting to PostgreSQL: %w", err)
	}
	host, _ := os.Hostname()
	var raw [4]byte
	rand.Read(raw[:])
	return &pgStore{
		pool: pool, lease: lease, log: log,
		owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(raw[:])),
	}, nil
}

// migrate brings the schema to the newest version; managers starting
// together take turns.
func (s *pgStore) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(pgMigrationLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS plugind_schema (component text PRIMARY KEY, version int NOT NULL)`); err != nil {
			return err
		}
		var v int
		err := tx.QueryRow(ctx, `SELECT version FROM plugind_schema WHERE component = 'tasks'`).Scan(&v)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if v > len(pgMigrations) {
			return fmt.Errorf("the database's tasks schema is version %d, newer than this plugind's %d", v, len(pgMigrations))
		}
		for _, m := range pgMigrations[v:] {
			for _, stmt := range m {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return err
				}
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO plugind_schema (component, version) VALUES ('tasks', $1)
			ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version`, len(pgMigrations))
		return err
	})
}

// leaseFor is how far ahead a write or a heartbeat pushes a lease: half the
// lease period, renewed every heartbeat, and swept every quarter period, so
// a dead owner's tasks read interrupted within one period.
func (s *pgStore) leaseFor() int64 { return (s.lease / 2).Microseconds() }

// put writes rec. It trims nothing: finished tasks beyond the cap are
// deleted by expire, on every replica's sweep. A trim here would run, on
// every finish on every replica, a DELETE that walks keep index entries
// (all but the rows it deletes) and that replicas finishing together
// would run against the same oldest rows, to make exact between sweeps a
// cap that, like retention, holds from each sweep (one a minute per
// replica, and at start).
func (s *pgStore) put(ctx context.Context, rec Task, _ int) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if rec.State == Queued {
		_, err := s.pool.Exec(ctx, `INSERT INTO plugind_tasks (id, state, record, progress, owner, lease_until)
			VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 microsecond')`,
			rec.ID, string(rec.State), json.RawMessage(data), rec.Progress, s.owner, s.leaseFor())
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE plugind_tasks SET state = $2, record = $3, progress = $4,
			finished_at = $5, expires_at = $6,
			lease_until = CASE WHEN $5::timestamptz IS NULL THEN now() + $7 * interval '1 microsecond' END
		WHERE id = $1 AND owner = $8 AND finished_at IS NULL`,
		rec.ID, string(rec.State), json.RawMessage(data), rec.Progress, rec.Finished, rec.ExpiresAt, s.leaseFor(), s.owner)
	switch {
	case err != nil:
		return err
	case tag.RowsAffected() == 0:
		return errSuperseded
	}
	return nil
}

// trim deletes the oldest finished tasks beyond keep, fleet-wide. A
// failure is logged: the next sweep trims again.
func (s *pgStore) trim(ctx context.Context, keep int) {
	_, err := s.pool.Exec(ctx, `DELETE FROM plugind_tasks WHERE id IN (
		SELECT id FROM plugind_tasks WHERE finished_at IS NOT NULL
		ORDER BY finished_at DESC, id DESC OFFSET $1)`, keep)
	if err != nil {
		s.log.Warn().Err(err).Msg("deleting the oldest finished tasks")
	}
}

func (s *pgStore) get(ctx context.Context, id string) (Task, error) {
	var data []byte
	var progress float64
	err := s.pool.QueryRow(ctx, `SELECT record, progress FROM plugind_tasks WHERE id = $1`, id).Scan(&data, &progress)
	if errors.Is(err, pgx.ErrNoRows) {
		return Task{}, ErrNotFound
	}
	if err != nil {
		return Task{}, err
	}
	var t Task
	if err := json.Unmarshal(data, &t); err != nil {
		return Task{}, err
	}
	if !t.State.finished() {
		t.Progress = progress // heartbeats bring it
	}
	return t, nil
}

// cancel asks the manager running a task to cancel it.
func (s *pgStore) cancel(ctx context.Context, id string) (Task, error) {
	var data []byte
	var progress float64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE plugind_tasks SET cancel_requested = true
			WHERE id = $1 AND finished_at IS NULL RETURNING record, progress`, id).Scan(&data, &progress)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, cancelChannel, id) // sent at commit
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) { // finished, or never was
		t, err := s.get(ctx, id)
		if err != nil {
			return Task{}, err
		}
		return t, ErrFinished
	}
	if err != nil {
		return Task{}, err
	}
	var t Task
	if err := json.Unmarshal(data, &t); err != nil {
		return Task{}, err
	}
	t.Progress = progress
	return t, nil
}

func (s *pgStore) expire(ctx context.Context, now time.Time, keep int) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM plugind_tasks WHERE expires_at < $1`, now); err != nil {
		return err
	}
	s.trim(ctx, keep)
	return nil
}

// recover migrates the schema, then interrupts what dead replicas left.
// Unlike a bbolt file, the database's unfinished tasks may be other
// replicas', alive: only expired leases are taken.
func (s *pgStore) recover(ctx context.Context, now time.Time, retention time.Duration, keep int) error {
	s.retention = retention
	if err := s.migrate(ctx); err != nil {
		return fmt.Errorf("creating the tasks schema: %w", err)
	}
	if _, err := s.sweepLeases(ctx); err != nil {
		return err
	}
	return s.expire(ctx, now, keep)
}

// heartbeat renews the leases of this manager's unfinished tasks and
// records their progress. It returns those whose cancellation was
// requested, and those no longer this manager's (swept as interrupted).
func (s *pgStore) heartbeat(ctx context.Context, progress map[string]float64) (cancel, lost []string, err error) {
	ids := make([]string, 0, len(progress))
	ps := make([]float64, 0, len(progress))
	for id, p := range progress {
		ids, ps = append(ids, id), append(ps, p)
	}
	rows, err := s.pool.Query(ctx, `UPDATE plugind_tasks AS t
		SET lease_until = now() + $3 * interval '1 microsecond', progress = u.p
		FROM unnest($1::text[], $2::float8[]) AS u(id, p)
		WHERE t.id = u.id AND t.owner = $4 AND t.finished_at IS NULL
		RETURNING t.id, t.cancel_requested`, ids, ps, s.leaseFor(), s.owner)
	if err != nil {
		return nil, nil, err
	}
	renewed := make(map[string]bool, len(ids))
	var id string
	var cancelled bool
	_, err = pgx.ForEachRow(rows, []any{&id, &cancelled}, func() error {
		renewed[id] = true
		if cancelled {
			cancel = append(cancel, id)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		if !renewed[id] {
			lost = append(lost, id)
		}
	}
	return cancel, lost, nil
}

// sweepLeases records as interrupted the unfinished tasks whose owner
// stopped renewing their lease. Managers sweeping together skip each
// other's rows.
func (s *pgStore) sweepLeases(ctx context.Context) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, record FROM plugind_tasks
			WHERE finished_at IS NULL AND lease_until < now()
			FOR UPDATE SKIP LOCKED LIMIT 1000`)
		if err != nil {
			return err
		}
		type row struct {
			id   string
			data []byte
		}
		expired, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.data)
		})
		if err != nil {
			return err
		}
		for _, x := range expired {
			var t Task
			if err := json.Unmarshal(x.data, &t); err != nil {
				t = Task{ID: x.id, Location: "/_TASKS/" + x.id}
			}
			now := time.Now()
			exp := now.Add(s.retention)
			t.State, t.Error = Interrupted, "the replica running the task stopped before it finished"
			t.Finished, t.ExpiresAt = &now, &exp
			data, err := json.Marshal(t)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE plugind_tasks SET state = $2, record = $3,
				finished_at = $4, expires_at = $5, lease_until = NULL WHERE id = $1`,
				x.id, string(t.State), json.RawMessage(data), now, exp); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// listen calls cancel with the id of every task whose cancellation is
// requested, until ctx ends; it reconnects after a failure (meanwhile,
// heartbeats read the requests).
func (s *pgStore) listen(ctx context.Context, cancel func(id string)) {
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, cancel)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn().Err(err).Msg("listening for task cancellations; heartbeats carry them meanwhile")
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *pgStore) listenOnce(ctx context.Context, cancel func(id string)) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := c.Hijack() // LISTEN belongs to this connection: it never returns to the pool
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+cancelChannel); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		cancel(n.Payload)
	}
}

func (s *pgStore) close() error {
	s.pool.Close()
	return nil
}
