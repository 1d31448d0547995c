package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/pgtest"
	"github.com/plugind/plugind/internal/plugintest"
)

type taskView struct {
	ID       string          `json:"id"`
	Plugin   string          `json:"plugin"`
	Name     string          `json:"name"`
	State    string          `json:"state"`
	Progress float64         `json:"progress"`
	Result   json.RawMessage `json:"result"`
	Error    string          `json:"error"`
}

// startTask starts a jobs task and returns its id and Location.
func startTask(t *testing.T, srv *running, query string) (string, response) {
	t.Helper()
	got := srv.do(t, "POST", "/_PLUGIN/jobs/Run?"+query, "")
	var body struct{ ID string }
	json.Unmarshal([]byte(got.body), &body)
	return body.ID, got
}

func waitTask(t *testing.T, srv *running, id string, done func(taskView) bool) taskView {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var v taskView
		got := srv.do(t, "GET", "/_TASKS/"+id, "")
		json.Unmarshal([]byte(got.body), &v)
		if done(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: %d %s", id, got.status, got.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTasks(t *testing.T) {
	dir := plugintest.PluginPath(t, "jobs")
	tasksDir := t.TempDir()
	set := func(c *config.Config) {
		c.Tasks = config.Tasks{Dir: tasksDir, Workers: 1, Queue: 1, Timeout: time.Minute, Retention: time.Hour}
		c.Lifecycle.ServerShutdownTimeout = 200 * time.Millisecond
	}
	srv := startWith(t, dir, set)

	id, got := startTask(t, srv, "d=200ms")
	if got.status != 202 || got.header.Get("Location") != "/_TASKS/"+id || len(id) < 16 {
		t.Fatalf("start: %d %v %s", got.status, got.header, got.body)
	}
	mid := waitTask(t, srv, id, func(v taskView) bool { return v.Progress > 0 && v.Progress < 1 || v.State == "done" })
	if mid.Plugin != "jobs" || mid.Name != "steps" {
		t.Errorf("task = %+v", mid)
	}
	done := waitTask(t, srv, id, func(v taskView) bool { return v.State == "done" })
	if string(done.Result) != `{"steps":4}` || done.Progress != 1 {
		t.Errorf("done = %+v", done)
	}

	id, _ = startTask(t, srv, "d=40ms&fail=1")
	if f := waitTask(t, srv, id, func(v taskView) bool { return v.State == "failed" }); f.Error != "step 4 failed" {
		t.Errorf("failed = %+v", f)
	}
	id, _ = startTask(t, srv, "d=40ms&panic=1")
	if f := waitTask(t, srv, id, func(v taskView) bool { return v.State == "failed" }); !strings.Contains(f.Error, "task exploded") {
		t.Errorf("panicked = %+v", f)
	}

	// Cancel a running task; meanwhile the queue (1 running + 1 queued) fills.
	running, _ := startTask(t, srv, "d=10s")
	waitTask(t, srv, running, func(v taskView) bool { return v.State == "running" })
	queued, _ := startTask(t, srv, "d=10ms")
	if _, got := startTask(t, srv, "d=10ms"); got.status != 429 || got.header.Get("Retry-After") == "" {
		t.Errorf("beyond the queue: %d %s", got.status, got.body)
	}
	if got := srv.do(t, "DELETE", "/_TASKS/"+running, ""); got.status != 202 {
		t.Errorf("cancel: %d %s", got.status, got.body)
	}
	waitTask(t, srv, running, func(v taskView) bool { return v.State == "cancelled" })
	waitTask(t, srv, queued, func(v taskView) bool { return v.State == "done" })
	if got := srv.do(t, "DELETE", "/_TASKS/"+running, ""); got.status != 409 {
		t.Errorf("cancelling a finished task: %d", got.status)
	}
	if got := srv.do(t, "GET", "/_TASKS/0123456789abcdef", ""); got.status != 404 || !json.Valid([]byte(got.body)) {
		t.Errorf("an unknown task: %d %s", got.status, got.body)
	}
	if got := srv.do(t, "GET", "/_TASKS/not-hex", ""); got.status != 404 {
		t.Errorf("a malformed id: %d", got.status)
	}

	// A task's state is visible a moment before its metrics are counted.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m := srv.do(t, "GET", "/metrics", "").body
		if strings.Contains(m, `plugind_tasks_finished_total{plugin="jobs",state="done"} 2`) &&
			strings.Contains(m, `plugind_tasks_finished_total{plugin="jobs",state="cancelled"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tasks are not counted in the metrics")
		}
	}

	// A task still running at shutdown, past the grace period: interrupted.
	long, _ := startTask(t, srv, "d=20s")
	waitTask(t, srv, long, func(v taskView) bool { return v.State == "running" })
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	again := startWith(t, dir, set)
	if v := waitTask(t, again, long, func(taskView) bool { return true }); v.State != "interrupted" {
		t.Errorf("a task cut by shutdown, after restart: %+v", v)
	}
	if v := waitTask(t, again, done.ID, func(taskView) bool { return true }); v.State != "done" || string(v.Result) != `{"steps":4}` {
		t.Errorf("a finished task after restart: %+v", v)
	}
}

// TestTaskDirOnlyForTheFileStore: the task directory is the file
// store's (tasks.db); a server on a PostgreSQL store leaves it uncreated
// (it may be the default, <pluginpath>/.plugind/tasks, in a plugin
// directory nothing should write to). A task runs through either store.
func TestTaskDirOnlyForTheFileStore(t *testing.T) {
	// It waits on PostgreSQL's start: in parallel with the other tests
	// that wait (no other parallel test calls jobs in this process).
	t.Parallel()
	tests := []struct {
		store   string
		dirMade bool
	}{
		{store: "bolt", dirMade: true},
		{store: "postgres", dirMade: false},
	}
	for _, tt := range tests {
		t.Run(tt.store, func(t *testing.T) {
			tasksDir := filepath.Join(t.TempDir(), "not", "yet")
			var dsn string
			if tt.store == "postgres" {
				dsn = pgtest.Start(t).NewDatabase(t)
			}
			srv := startWith(t, plugintest.PluginPath(t, "jobs"), func(c *config.Config) {
				c.Tasks = config.Tasks{Store: tt.store, DSN: dsn, Dir: tasksDir, Workers: 1, Timeout: time.Minute, Retention: time.Hour}
			})
			id, got := startTask(t, srv, "d=4ms")
			if got.status != 202 {
				t.Fatalf("start: %d %s", got.status, got.body)
			}
			waitTask(t, srv, id, func(v taskView) bool { return v.State == "done" })
			_, err := os.Stat(tasksDir)
			if made := err == nil; made != tt.dirMade {
				t.Errorf("tasks.dir created: %v, want %v (stat: %v)", made, tt.dirMade, err)
			}
			if _, err := os.Stat(filepath.Join(tasksDir, "tasks.db")); tt.dirMade && err != nil {
				t.Errorf("the file store: %v", err)
			}
		})
	}
}
