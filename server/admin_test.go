package server_test

import (
	"bufio"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plugind/plugind/internal/plugintest"
)

// sectionOf is plugin's own section of the admin fragment, "" when it has
// none: what a check of one plugin reads, so that another plugin's
// section cannot answer for it.
func sectionOf(fragment, plugin string) string {
	return regexp.MustCompile(`(?s)<article class="plugin" id="plugin-` + regexp.QuoteMeta(plugin) + `".*?</article>`).FindString(fragment)
}

// requestsOf reads the request count the admin fragment shows for plugin.
func requestsOf(fragment, plugin string) string {
	m := regexp.MustCompile(`class="requests">(\d+)<`).FindStringSubmatch(sectionOf(fragment, plugin))
	if m == nil {
		return ""
	}
	return m[1]
}

// errorsOf reads the server error count the admin fragment shows for plugin.
func errorsOf(fragment, plugin string) string {
	m := regexp.MustCompile(`class="errors">(\d+) `).FindStringSubmatch(sectionOf(fragment, plugin))
	if m == nil {
		return ""
	}
	return m[1]
}

func TestAdminPage(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello", "counter", "panics")
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "broken.go", "package main\n\nfunc GETXHandler() string { return y }\n")
	srv := startConfig(t, loadConfig(t, dir, "[admin]\nenabled = true\n"))

	page := srv.request(t, "GET", "/_ADMIN/", nil)
	if page.status != 200 || !strings.Contains(page.body, `id="plugin-hello"`) || !strings.Contains(page.body, `id="plugin-counter"`) {
		t.Fatalf("GET /_ADMIN/: %d\n%s", page.status, page.body)
	}
	// The page's own policy replaces the server's JSON one, and allows
	// its own style and script by nonce; the other headers stay.
	csp := page.header.Get("Content-Security-Policy")
	nonce := regexp.MustCompile(`script-src 'nonce-([^']+)'`).FindStringSubmatch(csp)
	if nonce == nil || !strings.Contains(page.body, `<script nonce="`+nonce[1]+`">`) {
		t.Fatalf("Content-Security-Policy %q does not allow the page's script", csp)
	}
	if page.header.Get("X-Frame-Options") != "DENY" || page.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("security headers lost: %v", page.header)
	}
	if r := srv.request(t, "GET", "/_ADMIN", nil); r.status != 301 || r.header.Get("Location") != "/_ADMIN/" {
		t.Fatalf("GET /_ADMIN: %d, Location %q", r.status, r.header.Get("Location"))
	}

	// A request to a plugin is counted for it.
	if got := requestsOf(srv.request(t, "GET", "/_ADMIN/plugins", nil).body, "hello"); got != "0" {
		t.Fatalf("hello's requests before any: %q, want 0", got)
	}
	for range 3 {
		if r := srv.request(t, "GET", "/_PLUGIN/hello/Hello", nil); r.status != 200 {
			t.Fatalf("hello: %d %s", r.status, r.body)
		}
	}
	srv.request(t, "GET", "/_PLUGIN/nosuch/Hello", nil) // a name nobody serves is not recorded
	frag := srv.request(t, "GET", "/_ADMIN/plugins", nil).body
	if got := requestsOf(frag, "hello"); got != "3" {
		t.Fatalf("hello's requests after 3: %q\n%s", got, frag)
	}
	if strings.Contains(frag, "plugin-nosuch") {
		t.Fatal("a plugin that does not exist is listed")
	}
	// Server errors count for their plugin, whether its handler failed
	// (a panic) or it could not be reached (a build failure); a request
	// for a function it does not have is not one of its requests.
	for _, path := range []string{"/_PLUGIN/panics/Boom", "/_PLUGIN/panics/Ok", "/_PLUGIN/broken/X", "/_PLUGIN/broken/X"} {
		srv.request(t, "GET", path, nil)
	}
	if r := srv.request(t, "GET", "/_PLUGIN/panics/Nope", nil); r.status != 404 {
		t.Fatalf("no such function: %d", r.status)
	}
	frag = srv.request(t, "GET", "/_ADMIN/plugins", nil).body
	for _, c := range []struct{ plugin, requests, errors string }{{"panics", "2", "1"}, {"broken", "2", "2"}} {
		if r, e := requestsOf(frag, c.plugin), errorsOf(frag, c.plugin); r != c.requests || e != c.errors {
			t.Errorf("%s: %s requests, %s errors; want %s, %s", c.plugin, r, e, c.requests, c.errors)
		}
	}
	// hello's last build, in its own section: built by this server, or
	// loaded from the cache (a warm one). Other plugins' sections say
	// the same of theirs.
	hello := sectionOf(frag, "hello")
	built := regexp.MustCompile(`<div class="build ok">\s*<p>Built at <time `).MatchString(hello)
	if !built && !strings.Contains(hello, "No build since the server started: loaded from the artifact cache.") {
		t.Fatalf("hello's last build is not shown in its section:\n%s", hello)
	}
}

func TestAdminPageIsOffByDefaultAndBehindAuth(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	off := startConfig(t, loadConfig(t, dir, ""))
	if r := off.request(t, "GET", "/_ADMIN/", nil); r.status != 404 {
		t.Fatalf("admin off: GET /_ADMIN/ answered %d", r.status)
	}
	on := startConfig(t, loadConfig(t, plugintest.PluginPath(t, "hello"), "[admin]\nenabled = true\n[auth]\napikeys = [\"k3y\"]\n"))
	if r := on.request(t, "GET", "/_ADMIN/", nil); r.status != 401 {
		t.Fatalf("GET /_ADMIN/ without credentials: %d", r.status)
	}
	r := on.request(t, "GET", "/_ADMIN/", map[string]string{"X-API-Key": "k3y"})
	if r.status != 200 || !strings.Contains(r.body, `-H &#34;X-API-Key: $PLUGIND_API_KEY&#34;`) {
		t.Fatalf("GET /_ADMIN/ with a key: %d; want 200 and curl lines that send a key\n%s", r.status, r.body)
	}
}

// TestAdminEventStreamSharesTheBusLimits: the page's live tail is an
// event stream like /_EVENTS: one bus.maxstreams counts both (more get
// 503), and an open one does not hold up the shutdown.
func TestAdminEventStreamSharesTheBusLimits(t *testing.T) {
	srv := startConfig(t, loadConfig(t, plugintest.PluginPath(t), "[admin]\nenabled = true\n[bus]\nevents = true\nmaxstreams = 1\n"))
	resp, err := http.Get(srv.url + "/_ADMIN/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); resp.StatusCode != 200 || line != ": plugind admin\n" {
		t.Fatalf("GET /_ADMIN/events: %d %q", resp.StatusCode, line)
	}
	for _, path := range []string{"/_EVENTS", "/_ADMIN/events"} {
		if r := srv.request(t, "GET", path, nil); r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Errorf("GET %s past bus.maxstreams: %d %v %s", path, r.status, r.header, r.body)
		}
	}
	began := time.Now()
	if err := srv.stop(); err != nil || time.Since(began) > 5*time.Second {
		t.Errorf("shutdown with the page's stream open: %v after %s", err, time.Since(began))
	}
}
