// Package browser tests plugind's admin page in a real browser: Debian's
// chromium, driven over the DevTools protocol by chromedp, against the
// real plugind binary serving copies of the shipped plugins. It is its own
// module so that the server's module does not depend on chromedp.
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/plugind/plugind/internal/benchproc"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// Bounds. The diagnostic's is the product's promise; the others only
// stop a broken run.
const (
	diagnosticShown = 3 * time.Second  // a saved compile error is on the page
	firstBuild      = 10 * time.Minute // cold: std is compiled in plugin mode
	rebuild         = 2 * time.Minute
	pageUpdate      = 15 * time.Second
)

// repoRoot is the plugind checkout this module sits in.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// browser starts chromium with a fresh profile and returns a tab's
// context. A missing browser is a failure, not a skip: this test is what
// proves the page works in one.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("this test needs a browser: install the Debian package chromium (apt-get install -y chromium); %s: %v", chromiumPath, err)
	}
	profile, err := os.MkdirTemp("", "plugind-chromium-*")
	if err != nil {
		t.Fatal(err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit
		// Its helpers may still be writing the profile for a moment.
		deadline := time.Now().Add(10 * time.Second)
		for os.RemoveAll(profile) != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	})
	return ctx
}

// console collects what the page writes to its console, and the browser's
// log (a Content-Security-Policy violation is logged there).
type console struct {
	mu   sync.Mutex
	msgs []string
}

func (c *console) follow(ctx context.Context) {
	msgs := chromedp.Console(ctx) // subscribed now, before the navigation
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, fmt.Sprintf("%s: %s", m.Type, m.Text))
			c.mu.Unlock()
		}
	}()
}

func (c *console) problems() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if strings.HasPrefix(m, "error") || strings.HasPrefix(m, "exception") || strings.Contains(m, "Content Security Policy") {
			out = append(out, m)
		}
	}
	return out
}

func TestAdminPageInBrowser(t *testing.T) {
	root := repoRoot()
	work := t.TempDir()

	// The real binary, built as make build does.
	bin := filepath.Join(work, "plugind")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// A plugin path holding copies of the shipped plugins, with the page on
	// (a config file, as a user would) and reload on (debug).
	dir := filepath.Join(work, "plugins")
	if err := os.CopyFS(filepath.Join(dir, "src"), os.DirFS(filepath.Join(root, "lib", "src"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prest.toml"), []byte("[admin]\nenabled = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var shipped []string
	entries, err := os.ReadDir(filepath.Join(root, "lib", "src"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		shipped = append(shipped, strings.TrimSuffix(e.Name(), ".go"))
	}

	ports, err := benchproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(work, "plugind.log")
	srv, err := benchproc.Start(bin, dir, ports[0], logPath, "PREST_DEBUG=true", "PREST_PLUGINS_WARMUP=false")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping plugind: %v", err)
		}
		if t.Failed() {
			benchproc.PrintTail("browser test", "plugind's log", logPath, 40)
		}
	})
	ctx := context.Background()
	client := &http.Client{Timeout: firstBuild}
	status := func(path string) func(context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			resp, body, err := benchproc.Get(ctx, client, srv.URL(path), "")
			if err != nil {
				return false, err
			}
			if resp.StatusCode != http.StatusOK {
				return false, fmt.Errorf("%s: %s %s", path, resp.Status, body)
			}
			return true, nil
		}
	}
	if err := srv.Poll(ctx, 30*time.Second, 50*time.Millisecond, status("/readyz")); err != nil {
		t.Fatal(err)
	}
	// Load hello: the watcher rebuilds loaded (or failed) plugins on edit.
	if err := srv.Poll(ctx, firstBuild, time.Second, status("/_PLUGIN/hello/Hello")); err != nil {
		t.Fatal(err)
	}

	tab := browser(t)
	var cons console
	cons.follow(tab)
	shots, err := os.MkdirTemp("", "plugind-browser-*") // kept after the test: it is for a person
	if err != nil {
		t.Fatal(err)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		shotCtx, cancel := context.WithTimeout(tab, 20*time.Second)
		defer cancel()
		if png, err := chromedp.Run(shotCtx, chromedp.FullScreenshot(100)); err != nil {
			t.Logf("no screenshot: %v", err)
		} else if err := os.WriteFile(filepath.Join(shots, "admin.png"), png, 0o644); err == nil {
			t.Logf("screenshot: %s", filepath.Join(shots, "admin.png"))
		}
		if html, err := chromedp.Run(shotCtx, chromedp.Evaluate[string]("document.documentElement.outerHTML")); err == nil {
			if err := os.WriteFile(filepath.Join(shots, "admin.html"), []byte(html), 0o644); err == nil {
				t.Logf("page: %s", filepath.Join(shots, "admin.html"))
			}
		}
		t.Logf("console: %q", cons.problems())
		t.Fatalf(format, args...)
	}
	// waitFor polls expr in the page until it is a non-empty string.
	waitFor := func(what, expr string, limit time.Duration) string {
		t.Helper()
		v, err := chromedp.Run(tab, chromedp.Poll[string](expr,
			chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(limit)))
		if err != nil {
			fail("%s: not within %s: %v", what, limit, err)
		}
		return v
	}

	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL("/_ADMIN/"))); err != nil {
		fail("opening the page: %v", err)
	}
	names, _ := json.Marshal(shipped)
	waitFor("the shipped plugins "+string(names)+" listed", string(names)+`.every(n => document.getElementById("plugin-" + n)) && "ok"`, pageUpdate)
	waitFor("hello ready", `document.getElementById("plugin-hello").dataset.state === "ready" && "ok"`, pageUpdate)
	// The script runs (its nonce satisfies the page's policy) and follows
	// the server's events.
	waitFor("the event stream open", `document.getElementById("status").textContent.startsWith("Live") && "ok"`, pageUpdate)

	// A compile error is on the page, at its line, within the bound.
	src := filepath.Join(dir, "src", "hello.go")
	original, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	const good, bad = `MSG:      "Hello plugin caller!",`, `MSG:      undefinedGreeting,`
	at := strings.Index(string(original), good)
	if at < 0 {
		t.Fatalf("lib/src/hello.go no longer has %q to break", good)
	}
	line := 1 + strings.Count(string(original[:at]), "\n")
	saved := time.Now()
	if err := os.WriteFile(src, []byte(strings.Replace(string(original), good, bad, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	shown := waitFor(fmt.Sprintf("the compile error at hello.go:%d", line), fmt.Sprintf(`(() => {
		const a = document.getElementById("plugin-hello");
		const loc = a && a.querySelector(".diag .loc"), hit = a && a.querySelector(".diag .hit");
		return loc && hit && loc.textContent.startsWith("hello.go:%d:") && hit.textContent.includes("undefinedGreeting")
			&& loc.textContent + " | " + hit.textContent.trim();
	})()`, line), diagnosticShown)
	t.Logf("compile error shown %v after the save: %s", time.Since(saved).Round(time.Millisecond), shown)

	// Fixed (a new source, so a real build), it shows built.
	fixed := fmt.Sprintf("%s\n// fixed %d\n", original, time.Now().UnixNano())
	saved = time.Now()
	if err := os.WriteFile(src, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("hello built once fixed", `(() => {
		const a = document.getElementById("plugin-hello");
		return a && a.dataset.state === "ready" && a.querySelector(".build.ok") && !a.querySelector(".diag") && "ok";
	})()`, rebuild)
	t.Logf("fix shown built %v after the save", time.Since(saved).Round(time.Millisecond))

	// A request moves hello's counter.
	const counter = `document.querySelector("#plugin-hello .requests").textContent.trim()`
	before := waitFor("hello's request counter", counter, pageUpdate)
	if err := srv.Poll(ctx, time.Minute, 50*time.Millisecond, status("/_PLUGIN/hello/Hello")); err != nil {
		fail("calling hello: %v", err)
	}
	var n int
	if _, err := fmt.Sscan(before, &n); err != nil {
		fail("hello's counter %q is not a number", before)
	}
	waitFor(fmt.Sprintf("hello's counter past %d", n), fmt.Sprintf(`%s === "%d" && "ok"`, counter, n+1), pageUpdate)

	if p := cons.problems(); len(p) > 0 {
		fail("the page logged errors: %q", p)
	}
	if errors.Is(context.Cause(tab), context.Canceled) {
		t.Fatal("the browser went away")
	}
}
