package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
)

// TestPrebuiltModeWithoutToolchain: plugind build fills a cache; the same
// binary, started with plugins.build = off, no go and no C compiler on
// PATH, GOROOT unset and the plugin directory (cache included) read-only,
// serves what was built (a prestd-ABI plugin and one importing sdk) and
// answers 503 naming plugind build for a plugin built by nobody; it
// writes nothing in the plugin directory.
func TestPrebuiltModeWithoutToolchain(t *testing.T) {
	bin := buildBinary(t)
	pp := plugintest.PluginPath(t, "hello", "sdkuser")
	plugintest.Middleware(t, pp, "forms", "tag") // prestd's src/middlewares/tag.go
	cache := filepath.Join(pp, ".plugind")       // the default: inside the plugin path
	out, err := plugind(t, bin, plugintest.Root(), pp, cache, "build")
	if err != nil || strings.Count(out, " built ") != 3 || !strings.Contains(out, "middlewares/tag ") {
		t.Fatalf("plugind build: %v\n%s", err, out)
	}
	conf := filepath.Join(pp, "prest.toml")
	plugintest.WriteFile(t, pp, "prest.toml", `pluginmiddlewarelist = [{file = "tag", func = "Negroni"}]`+"\n")
	plugintest.WriteFile(t, filepath.Join(pp, "src"), "unbuilt.go",
		plugintest.Unique(t, "package main\n\nfunc GETHiHandler() string { return \"hi\" }\n"))

	p, ready := startPrebuilt(t, bin, pp, "PREST_CONF="+conf)
	t.Logf("prebuilt mode: start to /readyz 200 in %s", ready)
	if !p.logged("plugins.build is off: serving artifacts from plugind build; the go command and a C compiler are never run") {
		t.Error("the start-up log does not say prebuilt mode runs")
	}
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"/_PLUGIN/hello/Hello?abc=123", 200, `"abc":["123"]`},
		{"/_PLUGIN/sdkuser/Env", 200, `"plugin":"sdkuser"`},
		{"/_PLUGIN/unbuilt/Hi", 503, "run `plugind build unbuilt`"},
		{"/_PLUGIN/unbuilt/Hi", 503, "run `plugind build unbuilt`"}, // not remembered as a failure
	}
	for _, tt := range tests {
		status, body := get(t, p.url+tt.path)
		if status != tt.status || !strings.Contains(body, tt.want) || !json.Valid([]byte(body)) {
			t.Errorf("GET %s = %d %s, want %d with %q", tt.path, status, body, tt.status, tt.want)
		}
	}
	if resp, err := http.Get(p.url + "/_PLUGIN/hello/Hello"); err != nil {
		t.Error(err)
	} else if resp.Body.Close(); resp.Header.Get("X-Form") != "negroni" {
		t.Errorf("the middleware plugind build made did not apply: X-Form %q", resp.Header.Get("X-Form"))
	}

	doctor := exec.Command(bin, "doctor")
	doctor.Env = prebuiltEnv(t, pp)
	dout, err := doctor.CombinedOutput()
	if err == nil || !strings.Contains(string(dout), "mode        prebuilt") ||
		!strings.Contains(string(dout), "plugin unbuilt has no artifact for its source: run plugind build unbuilt") ||
		strings.Contains(string(dout), "plugin hello has no artifact") {
		t.Errorf("doctor in prebuilt mode (%v):\n%s", err, dout)
	}
}

// startPrebuilt starts bin in prebuilt mode over plugin path pp with no
// toolchain, env added to its environment: PATH an empty directory, no GOROOT or CC, pp read-only. As
// root (who writes through any mode) it runs as nobody, so read-only
// holds. It returns the process and the time from start to /readyz 200,
// and checks at cleanup that nothing under pp changed.
func startPrebuilt(t *testing.T, bin, pp string, env ...string) (*proc, time.Duration) {
	t.Helper()
	cmd := exec.Command(bin) // by absolute path: PATH finds nothing
	cmd.Env = append(prebuiltEnv(t, pp), env...)
	cmd.Dir = "/"
	if os.Geteuid() == 0 {
		for _, dir := range []string{filepath.Dir(bin), pp} {
			openUp(t, dir)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	readOnly(t, pp)
	before := plugintest.Tree(t, pp) // with the modes it runs under
	t.Cleanup(func() {
		if after := plugintest.Tree(t, pp); after != before {
			t.Errorf("prebuilt mode wrote into the plugin directory:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
	start := time.Now()
	p := startCmd(t, cmd)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, time.Since(start)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within 30 s: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // polling the condition, bounded above
	}
}

// prebuiltEnv is the environment of an image without a toolchain.
func prebuiltEnv(t *testing.T, pp string) []string {
	t.Helper()
	tasks := t.TempDir()
	if os.Geteuid() == 0 {
		openUp(t, tasks)
		if err := os.Chown(tasks, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	return []string{
		"PATH=" + t.TempDir(), "HOME=/nonexistent",
		"PREST_PLUGINS_BUILD=off", "PREST_PLUGINPATH=" + pp, "PREST_TASKS_DIR=" + filepath.Join(tasks, "tasks"),
		"PREST_HTTP_HOST=127.0.0.1", "PREST_HTTP_PORT=0", "PREST_CONF=", "PREST_PLUGINS_LOADCHECKTIMEOUT=2m",
	}
}

// openUp lets any user into dir and the directories above it that the
// test owns (t.TempDir makes them 0700).
func openUp(t *testing.T, dir string) {
	t.Helper()
	for d := dir; strings.HasPrefix(d, os.TempDir()+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o055); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m := fi.Mode().Perm() | 0o044
		if fi.IsDir() || m&0o100 != 0 {
			m |= 0o011
		}
		return os.Chmod(path, m)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// readOnly is chmod -R a-w dir, undone at cleanup so that TempDir can
// remove it.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	chmodAll := func(f func(fs.FileMode) fs.FileMode) {
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil {
				fi, _ := d.Info()
				os.Chmod(path, f(fi.Mode().Perm()))
			}
			return nil
		})
	}
	chmodAll(func(m fs.FileMode) fs.FileMode { return m &^ 0o222 })
	t.Cleanup(func() { chmodAll(func(m fs.FileMode) fs.FileMode { return m | 0o200 }) })
}

// startCmd starts cmd, a plugind server, and waits for it to listen.
func startCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := &proc{cmd: cmd, events: make(chan map[string]any, 1000)}
	go func() {
		defer close(p.events)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				ev = map[string]any{"message": "not JSON: " + sc.Text()}
			}
			p.events <- ev
		}
	}()
	ev := p.waitFor(t, "listening")
	p.url = "http://" + strings.Replace(fmt.Sprint(ev["addr"]), "[::]", "127.0.0.1", 1)
	return p
}

// logged reports whether p has logged msg so far (waitFor's events).
func (p *proc) logged(msg string) bool {
	for _, ev := range p.seen {
		if ev["message"] == msg {
			return true
		}
	}
	return false
}

// TestSharedCacheTwoServers: two servers on one artifact cache (a shared
// volume) build the same new plugin at the same moment; both serve it;
// every artifact visible in the cache while they build is whole (its
// build information reads and matches the server's); afterwards the
// cache holds one artifact for it and no temporary files; and a third
// server starting on that cache loads it without building.
func TestSharedCacheTwoServers(t *testing.T) {
	bin := buildBinary(t)
	cache := t.TempDir()
	src := plugintest.Unique(t, "package main\n\nimport \"strings\"\n\nfunc GETShoutHandler() string { return strings.ToUpper(\"shared\") }\n")
	start := func() *proc {
		pp := plugintest.PluginPath(t) // its own tasks store: bbolt is one process's
		plugintest.WriteFile(t, filepath.Join(pp, "src"), "shout.go", src)
		// No warm-up: both start building at the first request.
		return startBinaryIn(t, plugintest.Root(), bin, pp, "PREST_PLUGINS_CACHEDIR="+cache, "PREST_PLUGINS_WARMUP=false")
	}
	a, b := start(), start()
	host, err := build.HostBuildInfo()
	if err != nil {
		t.Fatal(err)
	}

	// A reader of the cache, as a third process would be, for as long as
	// the builds run.
	stop, halfRead := make(chan struct{}), make(chan []string, 1)
	go func() {
		var bad []string
		defer func() { halfRead <- bad }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			sos, _ := filepath.Glob(filepath.Join(cache, "*.so"))
			for _, so := range sos {
				if diffs, err := build.Compatible(so, host); err != nil || len(diffs) > 0 {
					bad = append(bad, fmt.Sprintf("%s: %v %v", filepath.Base(so), err, diffs))
				}
			}
		}
	}()

	var wg sync.WaitGroup
	results := make([]string, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := a
			if i%2 == 1 {
				p = b
			}
			resp, err := http.Get(p.url + "/_PLUGIN/shout/Shout")
			if err != nil {
				results[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			var body strings.Builder
			_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
			results[i] = fmt.Sprintf("%d %s", resp.StatusCode, body.String())
		}()
	}
	wg.Wait()
	close(stop)
	if bad := <-halfRead; len(bad) > 0 {
		t.Errorf("artifacts read while the servers built: %v", bad)
	}
	for _, p := range []*proc{a, b} {
		if ev := p.waitFor(t, "plugin build finished"); ev["plugin"] != "shout" || ev["ok"] != true {
			t.Errorf("each server builds the plugin itself, at once: %v", ev)
		}
	}
	for i, r := range results {
		if r != "200 SHARED" {
			t.Errorf("request %d: %s", i, r)
		}
	}

	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	var artifacts []string
	for _, e := range entries {
		switch n := e.Name(); {
		case strings.HasSuffix(n, ".tmp"), strings.HasPrefix(n, "warmup"):
			t.Errorf("left in the shared cache: %s", n)
		case strings.HasSuffix(n, ".so"):
			artifacts = append(artifacts, n)
			if diffs, err := build.Compatible(filepath.Join(cache, n), host); err != nil || len(diffs) > 0 {
				t.Errorf("artifact %s: %v %v", n, err, diffs)
			}
		}
	}
	if len(artifacts) != 1 {
		t.Errorf("artifacts in the shared cache: %v, want one", artifacts)
	}

	c := start()
	if status, body := get(t, c.url+"/_PLUGIN/shout/Shout"); status != 200 || body != "SHARED" {
		t.Errorf("third server: %d %s", status, body)
	}
	ev := c.waitFor(t, "plugin loaded")
	if ev["cached"] != true {
		t.Errorf("third server built the plugin again: %v", ev)
	}
}
