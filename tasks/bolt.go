package tasks

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// boltStore keeps task records in a bbolt file, <dir>/tasks.db. bbolt's
// file lock makes the file one process's; the pid file beside it,
// <dir>/tasks.pid, names that process to whoever finds the file locked.
type boltStore struct {
	db      *bolt.DB
	pidFile string
}

var (
	tasksBucket = []byte("tasks") // id -> JSON record
	// endedBucket indexes finished records by when they finished: an
	// 8-byte big-endian UnixNano, then the id. Its sequence is its count.
	endedBucket = []byte("ended")
)

// LockedError is returned by Open when another process has the store.
type LockedError struct {
	Dir string
	PID int // 0 when the holder is not known
}

func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("another process is using %s (its tasks.db is locked)", e.Dir)
	}
	return fmt.Sprintf("another plugind (pid %d) is using %s", e.PID, e.Dir)
}

// openBolt opens the store in dir, creating dir if need be: only this
// store has one (a PostgreSQL store writes no file).
func openBolt(dir string, lockWait time.Duration) (*boltStore, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("tasks.dir: %w", err)
		}
	}
	db, err := bolt.Open(filepath.Join(dir, "tasks.db"), 0o600, &bolt.Options{Timeout: lockWait})
	if errors.Is(err, berrors.ErrTimeout) {
		abs, aerr := filepath.Abs(dir)
		if aerr != nil {
			abs = dir
		}
		return nil, &LockedError{Dir: abs, PID: holder(filepath.Join(dir, "tasks.pid"))}
	}
	if err != nil {
		return nil, fmt.Errorf("tasks.dir: %w", err)
	}
	s := &boltStore{db: db, pidFile: filepath.Join(dir, "tasks.pid")}
	// Written once the lock is ours; renamed into place so a reader never
	// sees half of it.
	tmp := s.pidFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		db.Close()
		return nil, fmt.Errorf("tasks.dir: %w", err)
	}
	if err := os.Rename(tmp, s.pidFile); err != nil {
		db.Close()
		return nil, fmt.Errorf("tasks.dir: %w", err)
	}
	return s, nil
}

// holder reads the pid file of the process that has the store: 0 when it
// is missing, or names a process that is gone (a crash left it).
func holder(pidFile string) int {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !alive(pid) {
		return 0
	}
	return pid
}

func (s *boltStore) close() error {
	if data, err := os.ReadFile(s.pidFile); err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(os.Getpid()) {
		os.Remove(s.pidFile) // while the lock is still ours
	}
	return s.db.Close()
}

func endedKey(t Task) []byte {
	k := make([]byte, 8, 8+len(t.ID))
	binary.BigEndian.PutUint64(k, uint64(t.Finished.UnixNano()))
	return append(k, t.ID...)
}

func (s *boltStore) put(_ context.Context, rec Task, keep int) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		tb, eb := tx.Bucket(tasksBucket), tx.Bucket(endedBucket)
		n := eb.Sequence()
		if old := tb.Get([]byte(rec.ID)); old != nil {
			var prev Task
			if json.Unmarshal(old, &prev) == nil && prev.State.finished() && prev.Finished != nil {
				if err := eb.Delete(endedKey(prev)); err != nil {
					return err
				}
				n--
			}
		}
		if err := tb.Put([]byte(rec.ID), data); err != nil {
			return err
		}
		if rec.State.finished() && rec.Finished != nil {
			if err := eb.Put(endedKey(rec), nil); err != nil {
				return err
			}
			n++
		}
		return trim(tb, eb, n, keep)
	})
}

// trim deletes the oldest finished records beyond keep; n is how many
// there are.
func trim(tb, eb *bolt.Bucket, n uint64, keep int) error {
	c := eb.Cursor()
	for k, _ := c.First(); k != nil && n > uint64(keep); k, _ = c.First() {
		if err := tb.Delete(k[8:]); err != nil {
			return err
		}
		if err := c.Delete(); err != nil {
			return err
		}
		n--
	}
	return eb.SetSequence(n)
}

func (s *boltStore) get(_ context.Context, id string) (Task, error) {
	var t Task
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(tasksBucket).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &t)
	})
	return t, err
}

func (s *boltStore) expire(_ context.Context, now time.Time, keep int) error {
	var gone [][]byte
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error { // most sweeps find nothing: no write, no fsync
		tb, eb := tx.Bucket(tasksBucket), tx.Bucket(endedBucket)
		n = eb.Sequence()
		return eb.ForEach(func(k, _ []byte) error {
			var t Task
			if v := tb.Get(k[8:]); v == nil || json.Unmarshal(v, &t) != nil || t.ExpiresAt == nil || now.After(*t.ExpiresAt) {
				gone = append(gone, append([]byte(nil), k...))
			}
			return nil
		})
	})
	if err != nil || (len(gone) == 0 && n <= uint64(keep)) {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		tb, eb := tx.Bucket(tasksBucket), tx.Bucket(endedBucket)
		n := eb.Sequence()
		for _, k := range gone {
			if eb.Get(k) == nil {
				continue
			}
			if err := tb.Delete(k[8:]); err != nil {
				return err
			}
			if err := eb.Delete(k); err != nil {
				return err
			}
			n--
		}
		return trim(tb, eb, n, keep)
	})
}

// recover records unfinished tasks as interrupted (the file lock says
// their process is gone) and rebuilds the index of finished ones, which
// stores written before it existed lack.
func (s *boltStore) recover(_ context.Context, now time.Time, retention time.Duration, keep int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		tb, err := tx.CreateBucketIfNotExists(tasksBucket)
		if err != nil {
			return err
		}
		if tx.Bucket(endedBucket) != nil {
			if err := tx.DeleteBucket(endedBucket); err != nil {
				return err
			}
		}
		eb, err := tx.CreateBucket(endedBucket)
		if err != nil {
			return err
		}
		var bad [][]byte
		var all []Task
		if err := tb.ForEach(func(k, v []byte) error {
			var t Task
			if err := json.Unmarshal(v, &t); err != nil {
				bad = append(bad, append([]byte(nil), k...))
				return nil
			}
			all = append(all, t)
			return nil
		}); err != nil {
			return err
		}
		for _, k := range bad {
			if err := tb.Delete(k); err != nil {
				return err
			}
		}
		var n uint64
		for _, t := range all {
			if !t.State.finished() || t.Finished == nil {
				exp := now.Add(retention)
				t.State, t.Error = Interrupted, "the server stopped before the task finished"
				t.Finished, t.ExpiresAt = &now, &exp
				data, err := json.Marshal(t)
				if err != nil {
					return err
				}
				if err := tb.Put([]byte(t.ID), data); err != nil {
					return err
				}
			}
			if err := eb.Put(endedKey(t), nil); err != nil {
				return err
			}
			n++
		}
		return trim(tb, eb, n, keep)
	})
}

// cancel: a bbolt file is one process's, which runs all its unfinished
// tasks, so a task not running here has finished or is unknown.
func (s *boltStore) cancel(ctx context.Context, id string) (Task, error) {
	t, err := s.get(ctx, id)
	switch {
	case err != nil:
		return Task{}, err
	case t.State.finished():
		return t, ErrFinished
	}
	return t, fmt.Errorf("tasks: task %s is %s but not run by this process", id, t.State)
}
