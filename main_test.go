package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
)

// binaries are the server binaries this package's tests run, one per
// build environment, shared: linking the server under -race takes 6-9 s,
// and most tests want the same one. TestMain owns the directory.
var binaries struct {
	sync.Mutex
	dir   string
	byEnv map[string]string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plugind-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaries.dir, binaries.byEnv = dir, map[string]string{}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinary returns plugind built with the test binary's own build
// flags (so -race under the race detector) and env added to go build's
// environment, building it the first time a test asks for that env.
// Tests must not change the file.
//
// go build writes it into a directory of the shared test cache kept for
// this source tree, flags and env (plugintest.KeptBuild), where the go
// command skips the link when the binary there is up to date, and the
// test gets a copy in TestMain's directory: its own file, which tests
// may open up to other users, in a directory they may.
func buildBinary(t *testing.T, env ...string) string {
	t.Helper()
	binaries.Lock()
	defer binaries.Unlock()
	key := strings.Join(env, "\x00")
	if bin, ok := binaries.byEnv[key]; ok {
		return bin
	}
	host, err := build.HostBuildInfo()
	if err != nil {
		t.Fatal(err)
	}
	// -buildvcs=auto is go's default, whatever GOFLAGS this machine sets:
	// a binary built in a git checkout records a pseudo-version, as a
	// user's does.
	flags := []string{"-buildvcs=auto"}
	for _, f := range host.Flags {
		if slices.Contains(env, "CGO_ENABLED=0") && slices.Contains([]string{"-race", "-msan", "-asan"}, f) {
			continue // they need cgo; without it no plugin loads anyway
		}
		flags = append(flags, f)
	}
	kept := plugintest.KeptBuild(t, plugintest.Root(), "plugind", env, append(flags, ".")...)
	bin := filepath.Join(binaries.dir, fmt.Sprintf("%d", len(binaries.byEnv)), "plugind")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(kept)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	binaries.byEnv[key] = bin
	return bin
}

// proc is a started plugind binary.
type proc struct {
	cmd    *exec.Cmd
	url    string
	events chan map[string]any // its log, one event per line
	seen   []map[string]any    // events waitFor has read
}

func startBinary(t *testing.T, bin, pluginPath string, env ...string) *proc {
	t.Helper()
	return startBinaryIn(t, "", bin, pluginPath, env...)
}

// startBinaryIn starts bin in the working directory dir ("": the test's).
func startBinaryIn(t *testing.T, dir, bin, pluginPath string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PREST_PLUGINPATH="+pluginPath, "PREST_HTTP_HOST=127.0.0.1", "PREST_HTTP_PORT=0",
		"PREST_PLUGINS_CACHEDIR="+plugintest.CacheDir(), "PREST_PLUGINS_CACHEMAXMB="+strconv.Itoa(plugintest.CacheMaxMB), "PREST_CONF=", "PORT=",
		"PREST_PLUGINS_BUILDWAIT="+plugintest.BuildWait.String(), "PREST_HTTP_WRITETIMEOUT="+plugintest.WriteTimeout.String(), "PREST_PLUGINS_LOADCHECKTIMEOUT=2m")
	cmd.Env = append(cmd.Env, env...)
	return startCmd(t, cmd)
}

// waitFor returns the first event with message msg, failing on a line
// that is not JSON (every log line must be one JSON event).
func (p *proc) waitFor(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				t.Fatalf("plugind exited before logging %q", msg)
			}
			p.seen = append(p.seen, ev)
			if m := fmt.Sprint(ev["message"]); strings.HasPrefix(m, "not JSON") {
				t.Errorf("log line %s", m)
			} else if m == msg {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q log event", msg)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The tests of a running binary that mostly wait (on its start, its
// answers, its exit) run in parallel: each has a process, a plugin path
// and a port of its own, and none sets this process's environment.

func TestBinarySIGTERMWithRequestInFlight(t *testing.T) {
	t.Parallel()
	p := startBinary(t, buildBinary(t), plugintest.PluginPath(t, "hello", "std"))
	if status, body := get(t, p.url+"/_PLUGIN/hello/Hello?abc=123"); status != 200 || !strings.Contains(body, `"abc":["123"]`) {
		t.Fatalf("hello = %d %s", status, body)
	}
	get(t, p.url+"/_PLUGIN/std/Slow?d=0s")
	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(p.url + "/_PLUGIN/std/Slow?d=800ms")
		if err != nil {
			done <- result{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(b)}
	}()
	// Signal once the request is in the handler: in flight besides the
	// scrape that counts.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, body := get(t, p.url+"/metrics"); strings.Contains(body, "\nplugind_requests_in_flight 2\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow request never reached the handler")
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "shutting down")
	if r := <-done; r.status != 200 || r.body != "done" {
		t.Errorf("in-flight request: %d %q", r.status, r.body)
	}
	p.waitFor(t, "stopped")
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v, want status 0", err)
	}
}

func TestBinaryWithoutCgoAnswers501(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t, "CGO_ENABLED=0")
	p := startBinary(t, bin, plugintest.PluginPath(t, "hello"))
	status, body := get(t, p.url+"/_PLUGIN/hello/Hello")
	if status != 501 || !strings.Contains(body, "cgo") || !json.Valid([]byte(body)) {
		t.Errorf("without cgo: %d %s", status, body)
	}
	if status, _ := get(t, p.url+"/healthz"); status != 200 {
		t.Errorf("healthz = %d", status)
	}
	if status, _ := get(t, p.url+"/_PLUGIN/a.b/Hello"); status != 400 {
		t.Errorf("a bad name is still a 400, got %d", status)
	}
}

func TestBinaryNamesWhatIsMissingToBuild(t *testing.T) {
	t.Parallel()
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "nogo.go",
		plugintest.Unique(t, "package main\n\nfunc GETNogoHandler() string { return \"\" }\n"))
	p := startBinary(t, buildBinary(t), dir, "PATH="+t.TempDir())
	warned := slices.ContainsFunc(p.seen, func(ev map[string]any) bool {
		return ev["message"] == "plugins cannot be built or loaded here" &&
			strings.Contains(fmt.Sprint(ev["problem"]), `the go command "go" is not on PATH`)
	})
	if !warned {
		t.Errorf("no start-up warning about the missing go command in %v", p.seen)
	}
	status, body := get(t, p.url+"/_PLUGIN/nogo/Nogo")
	if status != 500 || !strings.Contains(body, `the go command \"go\" was not found`) {
		t.Errorf("request without go: %d %s", status, body)
	}
}

func TestBinaryRefusesInvalidConfig(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	for env, key := range map[string]string{"PREST_HTTP_PORT=abc": "http.port", "PREST_DEBUG=sometimes": "debug"} {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), env)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "'"+key+"'") {
			t.Errorf("%s: err %v, output %q; want a failure naming %s", env, err, out, key)
		}
	}
}

// devProc is a running plugind dev: its stdout (the banner) and stderr
// (console log lines), line by line, in one stream.
type devProc struct {
	cmd   *exec.Cmd
	lines chan string
	seen  []string
}

func startDev(t *testing.T, bin, pluginPath string, env ...string) *devProc {
	t.Helper()
	cmd := exec.Command(bin, "dev")
	cmd.Env = append(os.Environ(), "PREST_PLUGINPATH="+pluginPath, "PREST_HTTP_HOST=127.0.0.1", "PREST_HTTP_PORT=0",
		"PREST_PLUGINS_CACHEDIR="+plugintest.CacheDir(), "PREST_PLUGINS_CACHEMAXMB="+strconv.Itoa(plugintest.CacheMaxMB), "PREST_CONF=", "PORT=", "PREST_LOG_FORMAT=",
		"PREST_PLUGINS_BUILDWAIT="+plugintest.BuildWait.String(), "PREST_HTTP_WRITETIMEOUT="+plugintest.WriteTimeout.String(),
		"PREST_PLUGINS_LOADCHECKTIMEOUT=2m")
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := &devProc{cmd: cmd, lines: make(chan string, 1000)}
	done := make(chan struct{}, 2)
	for _, r := range []io.Reader{stdout, stderr} {
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
			done <- struct{}{}
		}()
	}
	go func() { <-done; <-done; close(p.lines) }()
	return p
}

// waitLine returns the first line not seen yet that contains want. It
// gives up, saying what was printed, before the test binary's deadline.
func (p *devProc) waitLine(t *testing.T, want string) string {
	t.Helper()
	wait := plugintest.BuildWait
	if d, ok := t.Deadline(); ok {
		wait = min(wait, time.Until(d)-10*time.Second)
	}
	timeout := time.After(wait)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("plugind dev exited before printing %q; printed:\n%s", want, strings.Join(p.seen, "\n"))
			}
			p.seen = append(p.seen, line)
			if strings.Contains(line, want) {
				return line
			}
		case <-timeout:
			t.Fatalf("no line with %q; printed:\n%s", want, strings.Join(p.seen, "\n"))
		}
	}
}

// TestBinaryDev is a plugin author's loop: plugind dev prints where the
// plugins are, serves one, and says when an edit rebuilt it or did not
// build.
func TestBinaryDev(t *testing.T) {
	dir := plugintest.PluginPath(t)
	src := filepath.Join(dir, "src")
	note := func(body string) string {
		return plugintest.Unique(t, "package main\n\nfunc GETNoteHandler() string { return "+body+" }\n")
	}
	plugintest.WriteFile(t, src, "note.go", note(`"v1"`))
	p := startDev(t, buildBinary(t), dir)

	admin := p.waitLine(t, "admin    http://127.0.0.1:")
	line := p.waitLine(t, "/_PLUGIN/note/Note'")
	_, quoted, _ := strings.Cut(line, "curl '")
	url, _, _ := strings.Cut(quoted, "'")
	if base, ok := strings.CutSuffix(url, "/_PLUGIN/note/Note"); !ok || !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(admin, base+"/_ADMIN/") {
		t.Fatalf("banner: %q, %q", admin, line)
	}

	if status, body := get(t, url); status != 200 || body != "v1" {
		t.Fatalf("first call: %d %q", status, body)
	}
	p.waitLine(t, "note built in ")

	plugintest.WriteFile(t, src, "note.go", note(`"v2"`))
	rebuilt := p.waitLine(t, "note rebuilt in ")
	if !regexp.MustCompile(`INF note rebuilt in [0-9.]+(ms|s) `).MatchString(rebuilt) {
		t.Errorf("rebuild line %q", rebuilt)
	}
	if status, body := get(t, url); status != 200 || body != "v2" {
		t.Errorf("after the edit: %d %q", status, body)
	}

	plugintest.WriteFile(t, src, "note.go", note("undefinedName"))
	failed := p.waitLine(t, "note: build failed: ")
	if !strings.Contains(failed, "note: build failed: note.go:4:") || !strings.Contains(failed, "undefined: undefinedName") {
		t.Errorf("build failure line %q", failed)
	}
	if status, body := get(t, url); status != 200 || body != "v2" {
		t.Errorf("the last good version serves on: %d %q", status, body)
	}
	for _, l := range p.seen {
		if strings.HasPrefix(l, "{") {
			t.Errorf("a JSON line in dev's console output: %s", l)
		}
	}
}

// TestBinaryStartUp checks what the server says and decides at start:
// hot reload off in production, prestd 2.x's JWT defaults, and plugin
// names that would share a secret variable. A plugin route that names no
// plugin shows whether JWT guards plugins: 401 before the lookup, else
// 404, with no build.
func TestBinaryStartUp(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	tests := []struct {
		name    string
		env     []string
		status  int    // of GET /_PLUGIN/nothere/Hello
		message string // a log event at start
	}{
		{name: "production", status: 404, message: "hot reload off (plugins.reload)"},
		{name: "a jwt.key alone leaves routes open", env: []string{"PREST_JWT_KEY=secret"}, status: 404},
		{name: "jwt.default turns JWT on", env: []string{"PREST_JWT_KEY=secret", "PREST_JWT_DEFAULT=true"}, status: 401},
		{
			name:    "debug turns JWT off, with a warning",
			env:     []string{"PREST_JWT_KEY=secret", "PREST_JWT_DEFAULT=true", "PREST_DEBUG=true"},
			status:  404,
			message: "debug is on: JWT checking is off (as in prestd); turn debug off to check tokens",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startBinary(t, bin, plugintest.PluginPath(t), tt.env...)
			if status, body := get(t, p.url+"/_PLUGIN/nothere/Hello"); status != tt.status {
				t.Errorf("/_PLUGIN/nothere/Hello: %d %s, want %d", status, body, tt.status)
			}
			if tt.message != "" && !slices.ContainsFunc(p.seen, func(ev map[string]any) bool { return ev["message"] == tt.message }) {
				t.Errorf("no %q at start in %v", tt.message, p.seen)
			}
		})
	}

	t.Run("ambiguous secret variable", func(t *testing.T) {
		t.Parallel()
		dir := plugintest.PluginPath(t)
		for _, name := range []string{"a", "a_b"} {
			plugintest.WriteFile(t, filepath.Join(dir, "src"), name+".go", "package main\n")
		}
		// Bounded: a server that does not refuse would serve on.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = append(os.Environ(), "PREST_PLUGINPATH="+dir, "PREST_CONF=", "PREST_HTTP_PORT=0", "PREST_PLUGIN_A_B_KEY=x")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), `PREST_PLUGIN_A_B_KEY is ambiguous: it is "b_key" of plugin "a" and "key" of plugin "a_b"`) {
			t.Errorf("err %v, output %s", err, out)
		}
	})
}
