package isolate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/isolate/child"
	"github.com/plugind/plugind/loader"
)

// allowedEnv are the variables of the server's environment a child
// inherits: what programs need to run (PATH, HOME, TMPDIR, locale, time
// zone) and the Go runtime's tuning. Nothing else: the server's
// credentials (PREST_AUTH_*, PREST_JWT_*, PREST_PLUGIN_* of other
// plugins) never reach a plugin's process. A plugin's own settings and
// secrets travel in a 0600 file the child removes once read.
var allowedEnv = []string{"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GODEBUG", "GOTRACEBACK"}

// childEnv is a child's whole environment. A serial child (every
// handler prestd's, whose calls take turns on the globals) runs on one
// P unless the operator set GOMAXPROCS: a second could only look for
// work, and on a machine the server, the child and their clients share,
// its spinning cost the child a fifth of its CPU per call (hello, 2
// cores, 50 connections: 50-54 against 39-43 µs).
func childEnv(name, sock, config string, serial bool) []string {
	var env []string
	for _, k := range allowedEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if _, set := os.LookupEnv("GOMAXPROCS"); serial && !set {
		env = append(env, "GOMAXPROCS=1")
	}
	return append(env, child.EnvPlugin+"="+name, child.EnvSocket+"="+sock, child.EnvConfig+"="+config,
		child.EnvParent+"="+strconv.Itoa(os.Getpid()))
}

// proc is one running child process.
type proc struct {
	plugin  string
	pid     int
	dir     string // private: socket and config file
	started time.Time
	healthy time.Duration // exec to first answer
	proxy   *httputil.ReverseProxy
	client  *http.Client // control requests
	tr      *transport
	cmd     *exec.Cmd
	stderr  *lineLog

	exited  chan struct{} // closed when the process has exited
	exitErr error         // set before exited closes
	killed  string        // why the supervisor killed it, if it did

	mu       sync.Mutex
	calls    int  // in flight
	draining bool // retired: takes no new calls
	idle     chan struct{}
}

// startProc starts prog for plugin name and waits until it answers, at
// most timeout. The error is ErrInit when the plugin's Init failed.
func startProc(ctx context.Context, name string, prog *program, cfg child.Config, timeout time.Duration, log zerolog.Logger) (*proc, error) {
	dir, err := os.MkdirTemp("", "plugind-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("plugin %q: private directory: %w", name, err)
	}
	pr := &proc{plugin: name, dir: dir, exited: make(chan struct{}), idle: make(chan struct{})}
	fail := func(err error) (*proc, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return fail(fmt.Errorf("plugin %q: encoding its settings: %w", name, err))
	}
	config := filepath.Join(dir, "config.json")
	if err := os.WriteFile(config, data, 0o600); err != nil {
		return fail(fmt.Errorf("plugin %q: writing its settings: %w", name, err))
	}
	sock := filepath.Join(dir, "s")
	plog := log.With().Str("plugin", name).Logger()
	pr.stderr = newLineLog(plog, "stderr", zerolog.WarnLevel)
	cmd := exec.Command(prog.exe)
	cmd.Env = childEnv(name, sock, config, prog.model.serial())
	cmd.Stdout = newLineLog(plog, "stdout", zerolog.InfoLevel)
	cmd.Stderr = pr.stderr
	cmd.WaitDelay = time.Second // a grandchild holding the pipes must not hold up Wait
	setProcAttr(cmd)
	pr.tr = newTransport(sock)
	pr.client = &http.Client{Transport: pr.tr}
	pr.proxy = newProxy(pr, plog)
	pr.started = time.Now()
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("plugin %q: starting its process: %w", name, err))
	}
	pr.cmd, pr.pid = cmd, cmd.Process.Pid
	go func() {
		pr.exitErr = cmd.Wait()
		pr.tr.CloseIdleConnections()
		_ = os.RemoveAll(dir)
		close(pr.exited)
	}()
	if err := pr.waitReady(ctx, timeout); err != nil {
		pr.kill("it did not become healthy")
		<-pr.exited
		if code := exitCode(pr.exitErr); code == child.ExitInit {
			return nil, &loader.Error{Kind: loader.ErrInit, Plugin: name, Err: pr.exitErr,
				Msg: fmt.Sprintf("plugin %q: Init failed", name), Detail: pr.stderr.last()}
		}
		return nil, &loader.Error{Kind: loader.ErrInit, Plugin: name, Err: err,
			Msg: fmt.Sprintf("plugin %q: its process did not start", name), Detail: pr.reason()}
	}
	pr.healthy = time.Since(pr.started)
	plog.Info().Int("pid", pr.pid).Dur("exec_to_healthy", pr.healthy).Msg("plugin process started")
	return pr, nil
}

// waitReady polls the child's ready path until it answers 200, the child
// exits, or timeout passes. The socket appears only after Init.
func (pr *proc) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pause := 500 * time.Microsecond
	for {
		if err := pr.ping(ctx); err == nil {
			return nil
		}
		t := time.NewTimer(pause)
		select {
		case <-pr.exited:
			t.Stop()
			return fmt.Errorf("exited before it was ready: %w", pr.exitErr)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("not ready within %s: %w", timeout, ctx.Err())
		case <-t.C:
		}
		pause = min(2*pause, 5*time.Millisecond) // a dial to a missing socket is cheap
	}
}

// ping asks the child whether it is alive: its server answers, whatever
// its plugin code is doing.
func (pr *proc) ping(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://plugin"+child.PathReady, nil)
	resp, err := pr.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ready: %s", resp.Status)
	}
	return nil
}

// health runs the plugin's Health hook in the child: "ok", its error, or
// "" when the plugin has none.
func (pr *proc) health(ctx context.Context) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://plugin"+child.PathHealth, nil)
	resp, err := pr.client.Do(req)
	if err != nil {
		return "its process does not answer: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch resp.StatusCode {
	case http.StatusNoContent:
		return ""
	case http.StatusOK:
		return "ok"
	}
	return strings.TrimSpace(string(body))
}

// acquire counts a call in, unless the process is retired or gone.
func (pr *proc) acquire() bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.draining || pr.gone() {
		return false
	}
	pr.calls++
	return true
}

func (pr *proc) release() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.calls--
	if pr.draining && pr.calls == 0 {
		close(pr.idle)
	}
}

func (pr *proc) load() int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.calls
}

func (pr *proc) gone() bool {
	select {
	case <-pr.exited:
		return true
	default:
		return false
	}
}

// stop retires the process: no new calls, the ones in flight complete
// (for at most grace), then SIGTERM (its Close hook runs), then SIGKILL
// after another grace.
func (pr *proc) stop(grace time.Duration) {
	pr.mu.Lock()
	if !pr.draining {
		pr.draining = true
		if pr.calls == 0 {
			close(pr.idle)
		}
	}
	pr.mu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-pr.idle:
	case <-pr.exited:
	case <-t.C:
	}
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	t.Reset(grace)
	select {
	case <-pr.exited:
	case <-t.C:
		pr.kill("it did not stop within " + grace.String() + " of SIGTERM")
		<-pr.exited
	}
}

// kill ends the process at once, noting why.
func (pr *proc) kill(why string) {
	pr.mu.Lock()
	if pr.killed == "" {
		pr.killed = why
	}
	pr.mu.Unlock()
	_ = pr.cmd.Process.Kill()
}

// reason describes how the process ended: exit status or signal, who
// killed it and why, and the last lines it wrote to stderr. For
// operators: it may hold plugin-written text.
func (pr *proc) reason() string {
	var b strings.Builder
	pr.mu.Lock()
	killed := pr.killed
	pr.mu.Unlock()
	switch {
	case pr.exitErr == nil:
		b.WriteString("exited with status 0")
	default:
		b.WriteString(pr.exitErr.Error()) // "exit status 2", "signal: killed"
	}
	if killed != "" {
		b.WriteString(" (killed by plugind: " + killed + ")")
	}
	if tail := pr.stderr.tail(); tail != "" {
		b.WriteString("; last stderr lines:\n" + tail)
	}
	return b.String()
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

// target is where the proxy sends calls; the transport dials the socket.
var target = &url.URL{Scheme: "http", Host: "plugin"}
