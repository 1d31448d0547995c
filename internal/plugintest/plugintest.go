// Package plugintest helps tests build and serve real plugins: a plugin
// directory made from the fixtures in testdata/plugins, an artifact cache
// shared by every test binary (artifacts are content-addressed, so sharing
// is safe, and a warm cache saves the compiler's seconds), and a log
// buffer that tests can query.
package plugintest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugind/plugind/internal/modproxy"
)

// Root is the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// CacheDir is the artifact cache shared by test binaries.
func CacheDir() string {
	if d := os.Getenv("PLUGIND_TEST_CACHE"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "plugind-test", "artifacts")
}

// CacheMaxMB is plugins.cachemaxmb for servers on the shared cache: more
// than it ever holds. A server prunes its cache when it starts, and the
// shared cache outgrows the default over runs: a prune there could
// delete an artifact another test process has built but not opened yet.
const CacheMaxMB = 1 << 20

// BuildWait is how long tests let a request wait for a build. On a
// fresh machine the first plugin build compiles the standard library in
// plugin mode, with several test binaries doing the same at once: minutes.
const BuildWait = 10 * time.Minute

// WriteTimeout is the HTTP write timeout of tests' servers: configuration
// requires plugins.buildwait to be less than http.writetimeout.
const WriteTimeout = BuildWait + time.Minute

// PluginPath makes a plugin path whose src holds copies of the named
// fixtures (files without ".go", or folders, from testdata/plugins;
// "hello" is lib/src/hello.go) and returns it.
func PluginPath(t testing.TB, fixtures ...string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	from := filepath.Join(Root(), "testdata", "plugins")
	for _, name := range fixtures {
		if name == "hello" {
			// The shipped example, prestd's: tests check what users run.
			data, err := os.ReadFile(filepath.Join(Root(), "lib", "src", "hello.go"))
			if err != nil {
				t.Fatal(err)
			}
			WriteFile(t, src, "hello.go", string(data))
			continue
		}
		if fi, err := os.Stat(filepath.Join(from, name)); err == nil && fi.IsDir() {
			if err := os.CopyFS(filepath.Join(src, name), os.DirFS(filepath.Join(from, name))); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := os.ReadFile(filepath.Join(from, name+".go"))
		if err != nil {
			t.Fatal(err)
		}
		WriteFile(t, src, name+".go", string(data))
	}
	return dir
}

// Middleware copies the middleware fixture testdata/middlewares/FIXTURE.go
// into pluginPath as src/middlewares/AS.go, where prestd keeps middleware
// plugins, and returns its path.
func Middleware(t testing.TB, pluginPath, fixture, as string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Root(), "testdata", "middlewares", fixture+".go"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(pluginPath, "src", "middlewares")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	WriteFile(t, dir, as+".go", string(data))
	return filepath.Join(dir, as+".go")
}

// WriteFile writes content to dir/name.
func WriteFile(t testing.TB, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Unique returns a plugin source that no cache has seen: body with a
// comment naming the test and the time, so a test can count real builds.
// It costs a build (seconds under -race) in every run: tests that only
// need a plugin of their own take Own.
func Unique(t testing.TB, body string) string {
	return fmt.Sprintf("// %s %d\n%s", t.Name(), time.Now().UnixNano(), body)
}

// Own returns body with a comment naming the test: a source no other
// test's equals, so in a test binary it is a plugin of the test's own
// (plugin.Open gives a process one instance per artifact, with its
// globals), but the same in every run, so the shared cache builds it
// once and serves it after. For a source that must be built in this run
// (a test counting builds, or watching an edit rebuild), take Unique.
func Own(t testing.TB, body string) string {
	return fmt.Sprintf("// %s\n%s", t.Name(), body)
}

// Log is a goroutine-safe buffer of JSON log lines.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String is everything logged so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Events returns the logged events whose fields include all of match.
func (l *Log) Events(match map[string]any) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewBufferString(l.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev map[string]any
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		ok := true
		for k, v := range match {
			if ev[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, ev)
		}
	}
	return out
}

// Busy calls f from n goroutines, again and again, until the returned
// stop is called; stop waits for them. For "under load" tests.
func Busy(n int, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
					f()
				}
			}
		})
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// ModuleProxy builds the test module proxy (internal/modproxy over
// testdata/modules) in a directory of t's and returns it, with the go
// command's environment for builds that fetch fixture modules: the proxy
// first, the machine's module cache (the server's own dependencies)
// second, nothing else, and a module cache of t's own, so that fixtures
// never reach the real one. Nothing reaches the network.
func ModuleProxy(t testing.TB) (*modproxy.Proxy, []string) {
	t.Helper()
	dir := t.TempDir()
	p, err := modproxy.Build(filepath.Join(Root(), "testdata", "modules"), filepath.Join(dir, "proxy"))
	if err != nil {
		t.Fatal(err)
	}
	return p, p.Env(filepath.Join(dir, "modcache"))
}

// ownProcessEnv names the test a child process runs (see OwnProcess).
const ownProcessEnv = "PLUGIND_TEST_OWN_PROCESS"

// OwnProcess reports whether the calling test should run its body: it
// runs in a child process started for it. Otherwise OwnProcess runs the
// test in such a child (the test binary, -test.run naming it), fails t
// if the child fails, and reports false. Go keeps one version of each
// package per process, across every loader in it: tests that load two
// versions of a module, or that must not meet the plugins of others,
// run so.
//
// The test waits for its child in parallel with the other parallel tests
// (t.Parallel): it shares nothing with them, and much of a child's time
// is spent waiting (on the go command, on its own children), so the
// test binary's time is less. It must be called before anything that
// keeps a test from running in parallel (t.Setenv, t.Chdir); the child
// itself runs as any test, and may call them.
func OwnProcess(t *testing.T) bool {
	t.Helper()
	if os.Getenv(ownProcessEnv) == t.Name() {
		return true
	}
	t.Parallel()
	var run []string
	for _, part := range strings.Split(t.Name(), "/") {
		run = append(run, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run="+strings.Join(run, "/"), "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), ownProcessEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in a process of its own: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("the child process did not run %s:\n%s", t.Name(), out)
	}
	return false
}

// Sums returns p's go.sum lines of module ("path version").
func Sums(t testing.TB, p *modproxy.Proxy, module string) string {
	t.Helper()
	var b strings.Builder
	for _, s := range p.Sums() {
		if strings.HasPrefix(s, module+" ") || strings.HasPrefix(s, module+"/go.mod ") {
			b.WriteString(s + "\n")
		}
	}
	if b.Len() == 0 {
		t.Fatalf("the module proxy has no go.sum lines for %s", module)
	}
	return b.String()
}

// CopyTree copies the tree at from (a path under the repository's
// testdata, e.g. "deps/shop") to the directory to.
func CopyTree(t testing.TB, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(filepath.Join(Root(), "testdata", filepath.FromSlash(from)))); err != nil {
		t.Fatal(err)
	}
}

// Tree lists every entry under dir with its size, mode and modification
// time ("" if dir does not exist): two equal Trees say nothing under dir
// was written, made or changed meanwhile.
func Tree(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s %s\n", path, fi.Size(), fi.Mode(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) && b.Len() == 0 {
		return ""
	} else if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
