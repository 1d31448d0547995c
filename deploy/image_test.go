package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImageBuild runs build.sh as the Dockerfile's build stage does, then
// starts the result as the runtime stage would: prebuilt mode, PATH with
// neither go nor cc, GOROOT unset, the image's files read-only. Every
// shipped plugin answers, and so does one that imports sdk (none of the
// shipped ones does): the -trimpath binary, plugind build and the
// prebuilt server agree on the sdk and the artifact keys.
func TestImageBuild(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	lib := t.TempDir()
	if err := os.CopyFS(filepath.Join(lib, "src"), os.DirFS(filepath.Join(root, "lib", "src"))); err != nil {
		t.Fatal(err)
	}
	sdkuser, err := os.ReadFile(filepath.Join(root, "testdata", "plugins", "sdkuser.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lib, "src", "sdkuser.go"), sdkuser, 0o644); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	t.Cleanup(func() { // build.sh leaves the image's files read-only
		filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(path, 0o755)
			}
			return nil
		})
	})
	start := time.Now()
	script := exec.Command(filepath.Join(root, "deploy", "build.sh"), out)
	script.Env = append(os.Environ(), "PLUGIND_SRC="+root, "PLUGIND_LIB="+lib)
	script.Dir = t.TempDir() // the script finds its tree by itself
	if b, err := script.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	} else {
		t.Logf("build.sh took %s:\n%s", time.Since(start).Round(time.Second), b)
	}

	bin := filepath.Join(out, "usr", "local", "bin", "plugind")
	var total int64
	sos, _ := filepath.Glob(filepath.Join(out, "app", "cache", "*.so"))
	for _, so := range sos {
		fi, err := os.Stat(so)
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
		t.Logf("artifact %s %.1f MB", filepath.Base(so), float64(fi.Size())/1e6)
	}
	if fi, err := os.Stat(bin); err == nil {
		t.Logf("binary %.1f MB; %d artifacts, %.1f MB", float64(fi.Size())/1e6, len(sos), float64(total)/1e6)
	}
	if len(sos) != 4 {
		t.Errorf("artifacts: %v, want one per plugin (hello, echo, report, sdkuser)", sos)
	}
	for _, dir := range []string{filepath.Join(out, "app"), filepath.Join(out, "usr", "local", "bin")} {
		if err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err == nil && fi.Mode().Perm()&0o222 != 0 {
				err = fmt.Errorf("%s is writable (%s)", path, fi.Mode())
			}
			return err
		}); err != nil {
			t.Error(err)
		}
	}

	// The runtime stage: its ENV, and nothing of the toolchain.
	cmd := exec.Command(bin) // by absolute path: PATH finds nothing
	cmd.Dir = filepath.Join(out, "app")
	cmd.Env = []string{
		"PATH=" + t.TempDir(), "HOME=/nonexistent",
		"PREST_PLUGINS_BUILD=off",
		"PREST_PLUGINPATH=" + filepath.Join(out, "app", "lib"),
		"PREST_PLUGINS_CACHEDIR=" + filepath.Join(out, "app", "cache"),
		"PREST_TASKS_DIR=" + filepath.Join(t.TempDir(), "tasks"),
		"PREST_HTTP_HOST=127.0.0.1", "PREST_HTTP_PORT=0",
	}
	started := time.Now()
	url, logs := serve(t, cmd)
	ready := waitReady(t, url)
	t.Logf("prebuilt mode: start to /readyz 200 in %s", ready.Sub(started).Round(time.Millisecond))

	tests := []struct {
		method, path string
		want         string
	}{
		{"GET", "/_PLUGIN/hello/Hello?abc=123", `"abc":["123"]`},
		{"GET", "/_PLUGIN/hello/HelloWithStatus", `Hello plugin caller`},
		{"POST", "/_PLUGIN/echo/Echo", `"method":"POST"`},
		{"GET", "/_PLUGIN/report/Summary", `{`},
		{"GET", "/_PLUGIN/sdkuser/Env", `"plugin":"sdkuser"`},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, url+tt.path, strings.NewReader("hi"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s %s = %d %s, want 2xx with %q", tt.method, tt.path, resp.StatusCode, body, tt.want)
		}
	}
	for _, ev := range logs() {
		if strings.Contains(ev, `"plugin build started"`) || strings.Contains(ev, `"level":"error"`) {
			t.Errorf("log: %s", ev)
		}
	}
}

// serve starts cmd, a plugind server, and returns its URL and a function
// that returns its log lines so far.
func serve(t *testing.T, cmd *exec.Cmd) (string, func() []string) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var seen []string
	all := func() []string {
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return seen
				}
				seen = append(seen, l)
			default:
				return seen
			}
		}
	}
	timeout := time.After(time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("plugind exited before listening:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			var ev struct{ Message, Addr string }
			if json.Unmarshal([]byte(l), &ev) == nil && ev.Message == "listening" {
				return "http://" + ev.Addr, all
			}
		case <-timeout:
			t.Fatalf("plugind did not listen within a minute:\n%s", strings.Join(seen, "\n"))
		}
	}
}

// waitReady polls /readyz until it answers 200 (bounded) and returns when.
func waitReady(t *testing.T, url string) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within 30 s (last: %v)", err)
		}
		time.Sleep(5 * time.Millisecond) // polling the condition, bounded above
	}
}
