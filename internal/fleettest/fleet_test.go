//go:build fleet

package fleettest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/benchproc"
	"github.com/plugind/plugind/internal/childproc"
	"github.com/plugind/plugind/internal/haproxytest"
	"github.com/plugind/plugind/internal/pgtest"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/internal/stats"
)

const (
	replicas = 3
	// apiKey is the operator key: the task routes are operator routes,
	// and a request through HAProxy is not a loopback client's.
	apiKey = "fleet-operator-key"
	// lease: a killed replica's tasks read interrupted within it.
	lease = 2 * time.Second
	// shutdownDelay is how long a replica serves after SIGTERM with
	// /readyz failing: several check intervals, so HAProxy takes it out
	// before its listener closes.
	shutdownDelay = 1500 * time.Millisecond
	checkInterval = 250 * time.Millisecond
	// The load: clients connections to HAProxy, each a GET after the
	// other, for loadFor (longer only if the restarts take longer).
	clients = 16
	loadFor = 30 * time.Second
	// margin is what a loaded 2-core machine may add to a bound.
	margin = time.Second
)

// TestFleet runs three replicas behind HAProxy on one prebuilt cache and
// one PostgreSQL task store, restarts them in turn under load and moves
// tasks between them. Its t.Logf lines are the figures of README
// "Deploying".
func TestFleet(t *testing.T) {
	if err := haproxytest.Check(); err != nil {
		t.Fatal(err) // before the builds: a missing package fails at once
	}
	var ports []int // of every server the test starts: free again at its end
	t.Cleanup(func() { portsFree(t, ports) })

	// PostgreSQL starts while plugind builds.
	var pg *pgtest.Server
	var pgErr error
	pgStarted := make(chan struct{})
	go func() { defer close(pgStarted); pg, pgErr = pgtest.New() }()
	t.Cleanup(func() {
		<-pgStarted
		if pg != nil {
			if err := pg.Close(); err != nil {
				t.Errorf("pgtest: %v", err)
			}
		}
	})

	bin := buildBinary(t)
	// One cache for the fleet, as a shared volume or an image's layer
	// would be. Its own: the build records plugind build writes beside
	// the artifacts name plugins, not binaries, and other test binaries
	// share plugintest.CacheDir.
	cache := t.TempDir()
	pp := plugintest.PluginPath(t, "hello", "jobs")
	prebuild(t, bin, pp, cache)

	<-pgStarted
	if pgErr != nil {
		t.Fatalf("pgtest: %v", pgErr)
	}
	dsn := pg.NewDatabase(t)
	ports = append(ports, pg.Port())

	free, err := benchproc.FreePorts(replicas)
	if err != nil {
		t.Fatal(err)
	}
	ports = append(ports, free...)
	var fleet []*replica
	var servers []haproxytest.Server
	for i, port := range free {
		r := newReplica(t, fmt.Sprintf("r%d", i+1), bin, port,
			"PREST_PLUGINPATH="+pp, "PREST_PLUGINS_CACHEDIR="+cache, "PREST_PLUGINS_BUILD=off",
			"PREST_TASKS_STORE=postgres", "PREST_TASKS_DSN="+dsn, "PREST_TASKS_LEASE="+lease.String(),
			"PREST_LIFECYCLE_SERVERSHUTDOWNDELAY="+shutdownDelay.String(), "PREST_LIFECYCLE_SERVERSHUTDOWNTIMEOUT=10s",
			"PREST_AUTH_APIKEYS="+apiKey)
		fleet = append(fleet, r)
		servers = append(servers, haproxytest.Server{Name: r.name, Addr: r.addr})
	}
	// The three start together, as a Deployment's pods do.
	for _, r := range fleet {
		r.launch(t)
	}
	var readiness []time.Duration // process start to /readyz 200
	for _, r := range fleet {
		readiness = append(readiness, r.awaitReady(t))
	}
	defer func() {
		t.Logf("figure: prebuilt mode, process start to /readyz 200: median %s, min %s, max %s over %d starts",
			stats.Median(readiness).Round(time.Millisecond), slices.Min(readiness).Round(time.Millisecond),
			slices.Max(readiness).Round(time.Millisecond), len(readiness))
	}()

	proxy := haproxytest.Start(t, haproxytest.Config{Servers: servers, Check: "/readyz", Interval: checkInterval, Retries: 3})
	if _, port, err := net.SplitHostPort(proxy.Addr); err == nil {
		n, _ := strconv.Atoi(port)
		ports = append(ports, n)
	}
	for _, r := range fleet {
		if err := proxy.Await(t.Context(), r.name, "UP", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("rolling restart under load", func(t *testing.T) {
		readiness = append(readiness, rollingRestart(t, proxy, fleet)...)
	})
	t.Run("a task is read and cancelled through the other replicas", func(t *testing.T) {
		status, body, header := do(t, http.MethodPost, proxy.URL("/_PLUGIN/jobs/Run?d=1m"))
		owner := header.Get(haproxytest.ServedBy)
		if status != http.StatusAccepted {
			t.Fatalf("starting a task through HAProxy: %d %s", status, body)
		}
		id := taskID(t, body)
		var others []*replica
		for _, r := range fleet {
			if r.name != owner {
				others = append(others, r)
			}
		}
		if len(others) != replicas-1 {
			t.Fatalf("HAProxy says %q started the task: not one of the replicas", owner)
		}
		for _, r := range others {
			if task := awaitTask(t, r, id, "running", 10*time.Second); task["plugin"] != "jobs" {
				t.Errorf("%s reads the task started on %s as %v", r.name, owner, task)
			}
		}
		asked := time.Now()
		if status, body, _ := do(t, http.MethodDelete, others[0].url("/_TASKS/"+id)); status != http.StatusAccepted {
			t.Fatalf("DELETE through %s of a task running on %s: %d %s", others[0].name, owner, status, body)
		}
		// The owner cancels it when notified; a second is the promise.
		awaitTask(t, others[1], id, "cancelled", time.Second+margin)
		t.Logf("figure: a task running on %s, cancelled through %s, reads cancelled through %s after %s",
			owner, others[0].name, others[1].name, time.Since(asked).Round(time.Millisecond))
		for _, r := range fleet {
			if task := awaitTask(t, r, id, "cancelled", 5*time.Second); task["state"] != "cancelled" {
				t.Errorf("%s: %v", r.name, task)
			}
		}
	})
	t.Run("the task of a killed replica reads interrupted within the lease", func(t *testing.T) {
		victim, reader := fleet[0], fleet[1]
		status, body, _ := do(t, http.MethodPost, victim.url("/_PLUGIN/jobs/Run?d=1m"))
		if status != http.StatusAccepted {
			t.Fatalf("starting a task on %s: %d %s", victim.name, status, body)
		}
		id := taskID(t, body)
		awaitTask(t, reader, id, "running", 10*time.Second)
		killed := victim.kill(t)
		task := awaitTask(t, reader, id, "interrupted", lease+margin)
		t.Logf("figure: the task of %s, killed with SIGKILL, reads interrupted through %s after %s (lease %s): %v",
			victim.name, reader.name, time.Since(killed).Round(time.Millisecond), lease, task["error"])
		awaitTask(t, fleet[2], id, "interrupted", 5*time.Second)
		if err := proxy.Await(t.Context(), victim.name, "DOWN", 5*time.Second); err != nil {
			t.Error(err)
		}
	})
}

// rollingRestart puts clients connections of load on proxy and, under
// it, stops each replica with SIGTERM and starts it again, one after
// the other. No request may fail. It returns the replicas' times from
// start to ready.
func rollingRestart(t *testing.T, proxy *haproxytest.Proxy, fleet []*replica) []time.Duration {
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	byServer := map[string]int64{}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, IdleConnTimeout: time.Minute},
	}
	defer client.CloseIdleConnections()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			mine := map[string]int64{}
			defer func() {
				mu.Lock()
				defer mu.Unlock()
				for k, v := range mine {
					byServer[k] += v
				}
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				by, err := hello(client, proxy.URL("/_PLUGIN/hello/Hello?abc=123"))
				if err == nil {
					ok.Add(1)
					mine[by]++
					continue
				}
				failed.Add(1)
				mu.Lock()
				if len(failures) < 20 {
					failures = append(failures, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
				mu.Unlock()
			}
		})
	}
	began := time.Now()
	stopped := false
	finish := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer finish()

	// The restarts are spread over the load: some load before the
	// first, between two and after the last.
	gap := loadFor / time.Duration(3*len(fleet)+1)
	pause := func(d time.Duration) {
		select {
		case <-time.After(d): // pacing the load, not waiting for a condition
		case <-t.Context().Done():
		}
	}
	var readiness []time.Duration
	type figure struct {
		name             string
		requests, failed int64
		took             time.Duration
	}
	var figures []figure
	for _, r := range fleet {
		pause(gap)
		okBefore, failedBefore, t0 := ok.Load(), failed.Load(), time.Now()
		r.signal(t, syscall.SIGTERM)
		// HAProxy takes the replica out while it still serves: /readyz
		// fails at once, the listener closes after shutdownDelay.
		if err := proxy.Await(t.Context(), r.name, "DOWN", shutdownDelay); err != nil {
			t.Errorf("%s: %v", r.name, err)
		} else if !r.run.Running() {
			t.Errorf("%s exited before HAProxy took it out", r.name)
		}
		r.wait(t, shutdownDelay+15*time.Second)
		readiness = append(readiness, r.start(t))
		if err := proxy.Await(t.Context(), r.name, "UP", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		figures = append(figures, figure{r.name, ok.Load() - okBefore, failed.Load() - failedBefore, time.Since(t0)})
		pause(gap)
	}
	if rest := loadFor - time.Since(began); rest > 0 {
		pause(rest)
	}
	finish()
	took := time.Since(began)

	for _, f := range figures {
		t.Logf("figure: rolling restart of %s (SIGTERM to back in HAProxy, %s): %d requests, %d failed",
			f.name, f.took.Round(time.Millisecond), f.requests, f.failed)
	}
	retries, redispatches, err := proxy.Retries(t.Context())
	if err != nil {
		t.Error(err)
	}
	t.Logf("figure: %d connections for %s through HAProxy, 3 rolling restarts: %d requests (%.0f/s), %d failed; by replica %v; HAProxy retried %d (%d on another replica)",
		clients, took.Round(time.Millisecond), ok.Load()+failed.Load(), float64(ok.Load()+failed.Load())/took.Seconds(),
		failed.Load(), byServer, retries, redispatches)
	if failed.Load() > 0 {
		t.Errorf("%d requests failed; the first:\n%s", failed.Load(), strings.Join(failures, "\n"))
	}
	for _, r := range fleet {
		if byServer[r.name] == 0 {
			t.Errorf("%s answered no request", r.name)
		}
	}
	return readiness
}

// hello GETs url with the operator key and returns the replica that
// answered (HAProxy's header); anything but hello's 200 is an error.
func hello(client *http.Client, url string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-API-Key", apiKey)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return "", fmt.Errorf("reading the answer of %s: %w", resp.Header.Get(haproxytest.ServedBy), err)
	case resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"abc":["123"]`):
		return "", fmt.Errorf("%s answered %s: %.200s", resp.Header.Get(haproxytest.ServedBy), resp.Status, body)
	}
	return resp.Header.Get(haproxytest.ServedBy), nil
}

// replica is one plugind server of the fleet, on a fixed port across
// restarts, its output appended to one log.
type replica struct {
	name, bin, addr string
	env             []string
	dir             string             // working directory (no prest.toml in it) and log
	run             *childproc.Process // the current one; nil before the first start
}

func newReplica(t *testing.T, name, bin string, port int, env ...string) *replica {
	dir := t.TempDir()
	base := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PREST_") || strings.HasPrefix(kv, "PORT=")
	})
	r := &replica{
		name: name, bin: bin, dir: dir,
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		env: append(base, append([]string{"PREST_HTTP_HOST=127.0.0.1", "PREST_HTTP_PORT=" + strconv.Itoa(port),
			"PREST_TASKS_DIR=" + filepath.Join(dir, "tasks"), "PREST_LOG_FORMAT=json"}, env...)...),
	}
	t.Cleanup(func() {
		if r.run != nil {
			r.run.Kill()
		}
		if t.Failed() {
			t.Logf("%s's log ends:\n%s", r.name, r.logTail())
		}
	})
	return r
}

func (r *replica) url(path string) string { return "http://" + r.addr + path }

// start starts the replica and waits for /readyz 200; it returns the time
// from the process's start to then.
func (r *replica) start(t *testing.T) time.Duration {
	t.Helper()
	r.launch(t)
	return r.awaitReady(t)
}

// launch starts the replica's process.
func (r *replica) launch(t *testing.T) {
	t.Helper()
	cmd := exec.Command(r.bin)
	cmd.Dir, cmd.Env = r.dir, r.env
	p, err := childproc.Start(r.name, cmd, filepath.Join(r.dir, "plugind.log"))
	if err != nil {
		t.Fatal(err)
	}
	r.run = p
}

// awaitReady waits for the replica's /readyz 200 and returns the time
// from the process's start to then.
func (r *replica) awaitReady(t *testing.T) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	err := r.run.Poll(t.Context(), 30*time.Second, 5*time.Millisecond, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url("/readyz"), nil)
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, errors.New(resp.Status)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s: /readyz not 200: %v\n%s", r.name, err, r.logTail())
	}
	return time.Since(r.run.Started)
}

func (r *replica) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := r.run.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}
}

// wait waits up to limit for the replica to exit, which it must do with
// status 0.
func (r *replica) wait(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-r.run.Exited():
		if err := r.run.Err(); err != nil {
			t.Errorf("%s exited with %v, want status 0:\n%s", r.name, err, r.logTail())
		}
	case <-time.After(limit):
		t.Fatalf("%s still running %s after SIGTERM", r.name, limit)
	}
}

// kill kills the replica with SIGKILL and returns when.
func (r *replica) kill(t *testing.T) time.Time {
	t.Helper()
	r.signal(t, syscall.SIGKILL)
	at := time.Now()
	<-r.run.Exited()
	return at
}

// logTail is the end of the replica's log.
func (r *replica) logTail() string {
	data, _ := os.ReadFile(filepath.Join(r.dir, "plugind.log"))
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// do sends method to url with the operator key.
func do(t *testing.T, method, url string) (int, string, http.Header) {
	t.Helper()
	req := plugintest.Request(t, method, url, "")
	req.Header.Set("X-API-Key", apiKey)
	a := plugintest.Do(t, &http.Client{Timeout: 10 * time.Second}, req)
	return a.Status, a.Body, a.Header
}

func taskID(t *testing.T, body string) string {
	t.Helper()
	var accepted struct{ ID string }
	if err := json.Unmarshal([]byte(body), &accepted); err != nil || accepted.ID == "" {
		t.Fatalf("no task id in %s (%v)", body, err)
	}
	return accepted.ID
}

// awaitTask reads task id through r until its state is state, for at
// most limit, and returns it.
func awaitTask(t *testing.T, r *replica, id, state string, limit time.Duration) map[string]any {
	t.Helper()
	deadline := time.After(limit)
	for {
		status, body, _ := do(t, http.MethodGet, r.url("/_TASKS/"+id))
		var task map[string]any
		if status == http.StatusOK && json.Unmarshal([]byte(body), &task) == nil && task["state"] == state {
			return task
		}
		select {
		case <-deadline:
			t.Fatalf("task %s through %s: not %s within %s; last %d %s", id, r.name, state, limit, status, body)
		case <-time.After(20 * time.Millisecond): // the next poll
		}
	}
}

// buildBinary builds plugind with the test binary's own build flags (so
// -race under the race detector): plugind build then builds the plugins
// with them too.
func buildBinary(t *testing.T) string {
	t.Helper()
	host, err := build.HostBuildInfo()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "plugind")
	cmd := exec.Command("go", append(append([]string{"build", "-o", bin}, host.Flags...), ".")...)
	cmd.Dir = plugintest.Root()
	began := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("go build of plugind: %s", time.Since(began).Round(time.Millisecond))
	return bin
}

// prebuild runs plugind build over the plugin path pp into cache, as an
// image build does: the replicas serve what it made.
func prebuild(t *testing.T, bin, pp, cache string) {
	t.Helper()
	cmd := exec.Command(bin, "build")
	cmd.Dir = plugintest.Root()
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PREST_") }),
		"PREST_PLUGINPATH="+pp, "PREST_PLUGINS_CACHEDIR="+cache, "PREST_PLUGINS_BUILD=auto")
	began := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello") || !strings.Contains(string(out), "jobs") {
		t.Fatalf("plugind build: %v\n%s", err, out)
	}
	t.Logf("plugind build of hello and jobs: %s", time.Since(began).Round(time.Millisecond))
}

// portsFree checks that nothing listens on ports any more: every server
// the test started has stopped.
func portsFree(t *testing.T, ports []int) {
	for _, port := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Errorf("port %d is still taken after the test: %v", port, err)
			continue
		}
		ln.Close()
	}
}
