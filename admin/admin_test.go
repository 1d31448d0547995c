package admin_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/admin"
	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/internal/reqstats"
	"github.com/plugind/plugind/loader"
)

// broken does not compile, and carries text a browser would run if the
// page did not escape it: in a comment, in the line the compiler names,
// and in its message.
const broken = `package main

// <script>alert("comment")</script>
func GETBrokenHandler() string {
	x := "</script><img src=x onerror=alert(1)>"
	return x + undefinedThing
}
`

// get fetches url with client, its body read whole.
func get(t *testing.T, client *http.Client, url string) plugintest.Answer {
	t.Helper()
	return plugintest.Do(t, client, plugintest.Request(t, http.MethodGet, url, ""))
}

func TestPage(t *testing.T) {
	dir := plugintest.PluginPath(t)
	hello, err := os.ReadFile(filepath.Join(plugintest.Root(), "lib", "src", "hello.go"))
	if err != nil {
		t.Fatal(err)
	}
	// A source no cache has seen, so that the page has a build to show.
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "hello.go", plugintest.Unique(t, string(hello)))
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "broken.go", broken)
	hist := admin.NewHistory(filepath.Join(dir, "src"))
	p, err := build.New(t.Context(), build.Options{SrcDir: filepath.Join(dir, "src"), CacheDir: plugintest.CacheDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := loader.New(loader.Options{
		Pipeline:  p,
		BuildWait: plugintest.BuildWait,
		Notify:    hist.Observe,
		Log:       zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	ctx := context.Background()
	if _, err := l.Handler(ctx, "hello", "Hello", http.MethodGet); err != nil {
		t.Fatalf("hello: %v", err)
	}
	if _, err := l.Handler(ctx, "broken", "Broken", http.MethodGet); !errors.Is(err, loader.ErrBuild) {
		t.Fatalf("broken: got %v, want a build failure", err)
	}
	stats := reqstats.New(nil)
	for range 7 {
		stats.Record("hello", http.StatusOK, 2*time.Millisecond)
	}
	stats.Record("hello", http.StatusInternalServerError, 40*time.Millisecond)

	srv := httptest.NewServer(admin.New(admin.Options{Plugins: l, History: hist, Stats: stats}))
	defer srv.Close()
	page := get(t, srv.Client(), srv.URL+"/_ADMIN/")
	body := page.Body
	if page.Status != http.StatusOK || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /_ADMIN/: %d, %s", page.Status, page.Header.Get("Content-Type"))
	}
	// Plugin text in the page is text: checked on the raw body first, as
	// markup it would also break the parse below.
	for _, raw := range []string{"<img", `<script>alert`} {
		if strings.Contains(body, raw) {
			t.Fatalf("the page contains %q unescaped", raw)
		}
	}
	doc, err := parseDoc(body)
	if err != nil {
		t.Fatalf("the page does not parse: %v\n%s", err, body)
	}

	t.Run("csp nonce", func(t *testing.T) {
		policy := page.Header.Get("Content-Security-Policy")
		m := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]{24})'`).FindStringSubmatch(policy)
		if m == nil || !strings.Contains(policy, "default-src 'none'") || !strings.Contains(policy, "style-src 'nonce-"+m[1]+"'") {
			t.Fatalf("Content-Security-Policy %q: want default-src 'none' and a nonce for style and script", policy)
		}
		scripts, styles := doc.byTag("script"), doc.byTag("style")
		if len(scripts) != 1 || len(styles) != 1 || scripts[0].Attr["nonce"] != m[1] || styles[0].Attr["nonce"] != m[1] {
			t.Fatalf("want one script and one style, both with nonce %q", m[1])
		}
		// Written as it is, not through entities.
		if !strings.Contains(body, `<script nonce="`+m[1]+`">`) {
			t.Fatalf("the script's nonce is not written as %q", m[1])
		}
		// Nothing is loaded from elsewhere: no src or href but data: URLs
		// and in-page links.
		for _, n := range doc.find(func(n *node) bool { return n.Attr["src"] != "" || n.Attr["href"] != "" }) {
			if u := n.Attr["src"] + n.Attr["href"]; !strings.HasPrefix(u, "data:") && !strings.HasPrefix(u, "#") {
				t.Errorf("<%s> loads %q", n.Tag, u)
			}
		}
		again := get(t, srv.Client(), srv.URL+"/_ADMIN/")
		if again.Header.Get("Content-Security-Policy") == policy {
			t.Fatal("two responses share a nonce")
		}
	})

	t.Run("hello", func(t *testing.T) {
		p := doc.byID("plugin-hello")
		if p == nil || p.Attr["data-state"] != string(loader.StateReady) {
			t.Fatalf("no ready hello in the page:\n%s", body)
		}
		text := p.Text()
		for _, want := range []string{"HelloWithStatus", "legacy", "func() (ret string)",
			"curl '" + srv.URL + "/_PLUGIN/hello/Hello'", "Built at", "current"} {
			if !strings.Contains(text, want) {
				t.Errorf("hello's section lacks %q", want)
			}
		}
		if got := p.byClass("requests"); len(got) != 1 || strings.TrimSpace(got[0].Text()) != "8" {
			t.Errorf("requests: %v, want 8", texts(got))
		}
		if got := p.byClass("errors"); len(got) != 1 || !strings.HasPrefix(got[0].Text(), "1 (12.5%)") {
			t.Errorf("errors: %v, want 1 (12.5%%)", texts(got))
		}
		if n := len(p.byClass("chart")); n != 2 {
			t.Errorf("%d charts, want 2", n)
		}
		if n := len(p.byClass("versions")[0].byTag("tr")); n != 2 {
			t.Errorf("versions table has %d rows, want a header and one version", n)
		}
	})

	t.Run("broken", func(t *testing.T) {
		p := doc.byID("plugin-broken")
		if p == nil || p.Attr["data-state"] != string(loader.StateFailed) {
			t.Fatalf("no failed broken in the page:\n%s", body)
		}
		diags := p.byClass("diag")
		if len(diags) == 0 {
			t.Fatalf("no diagnostics shown:\n%s", p.Text())
		}
		loc := strings.TrimSpace(diags[0].byClass("loc")[0].Text())
		if !strings.HasPrefix(loc, "broken.go:6:") || !strings.Contains(diags[0].Text(), "undefinedThing") {
			t.Fatalf("first diagnostic %q: want broken.go:6 about undefinedThing", diags[0].Text())
		}
		hit := diags[0].byClass("hit")
		if len(hit) != 1 || !strings.Contains(hit[0].Text(), "return x + undefinedThing") {
			t.Fatalf("the named line is not quoted: %v", texts(hit))
		}
		lines := diags[0].byClass("line")
		if len(lines) != 5 || !strings.Contains(lines[2].Text(), `x := "</script><img src=x onerror=alert(1)>"`) {
			t.Fatalf("want lines 3-7 quoted around line 6 (7 is the file's last), plugin text as text; got %v", texts(lines))
		}
	})

	t.Run("escaping", func(t *testing.T) {
		if imgs := doc.byTag("img"); len(imgs) > 0 {
			t.Fatalf("plugin text became markup: %d img elements", len(imgs))
		}
		if n := len(doc.byTag("script")); n != 1 {
			t.Fatalf("%d script elements, want only the page's own", n)
		}
	})

	t.Run("fragment", func(t *testing.T) {
		live := get(t, srv.Client(), srv.URL+"/_ADMIN/plugins")
		frag := live.Body
		if live.Status != http.StatusOK {
			t.Fatalf("GET /_ADMIN/plugins: %d", live.Status)
		}
		doc, err := parseDoc(frag)
		if err != nil {
			t.Fatal(err)
		}
		if doc.byID("plugin-hello") == nil || doc.byID("plugin-broken") == nil || len(doc.byTag("script")) != 0 {
			t.Fatalf("the fragment should hold both plugins and no script:\n%s", frag)
		}
	})

	t.Run("routes", func(t *testing.T) {
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		tests := []struct {
			method, path string
			status       int
			header, want string
		}{
			{http.MethodGet, "/_ADMIN", http.StatusMovedPermanently, "Location", "/_ADMIN/"},
			{http.MethodPost, "/_ADMIN/", http.StatusMethodNotAllowed, "Allow", "GET, HEAD"},
			{http.MethodGet, "/_ADMIN/nope", http.StatusNotFound, "", ""},
			{http.MethodHead, "/_ADMIN/", http.StatusOK, "Cache-Control", "no-store"},
			{http.MethodGet, "/_ADMIN/events", http.StatusNotFound, "", ""}, // no event stream configured
		}
		for _, tt := range tests {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || tt.header != "" && resp.Header.Get(tt.header) != tt.want {
				t.Errorf("%s %s: %s, %s %q; want %d, %q", tt.method, tt.path, resp.Status, tt.header, resp.Header.Get(tt.header), tt.status, tt.want)
			}
		}
	})
}

func texts(ns []*node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Text())
	}
	return out
}

// TestRevertAfterAFailedBuild: a source put back to a version loaded
// before (not the one serving) is served without a build; the page says
// the failed build no longer applies.
func TestRevertAfterAFailedBuild(t *testing.T) {
	dir := plugintest.PluginPath(t)
	src := filepath.Join(dir, "src")
	hello, err := os.ReadFile(filepath.Join(plugintest.Root(), "lib", "src", "hello.go"))
	if err != nil {
		t.Fatal(err)
	}
	good := plugintest.Unique(t, string(hello))
	plugintest.WriteFile(t, src, "hello.go", good)
	hist := admin.NewHistory(src)
	p, err := build.New(t.Context(), build.Options{SrcDir: src, CacheDir: plugintest.CacheDir(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := loader.New(loader.Options{
		Pipeline: p, BuildWait: plugintest.BuildWait,
		Reload: true, Notify: hist.Observe, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	if _, err := l.Handler(context.Background(), "hello", "Hello", http.MethodGet); err != nil {
		t.Fatal(err)
	}
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	waitEvent := func(kind loader.EventKind) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if ev := hist.Events("hello"); len(ev) > 0 && ev[0].Kind == kind {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s event; history %+v", kind, hist.Events("hello"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	plugintest.WriteFile(t, src, "hello.go", good+"\n// second\n")
	waitEvent(loader.EventReloaded)
	plugintest.WriteFile(t, src, "hello.go", strings.Replace(good, `"Hello plugin caller!"`, "undefinedGreeting", 1))
	waitEvent(loader.EventBuildFailed)

	srv := httptest.NewServer(admin.New(admin.Options{Plugins: l, History: hist}))
	defer srv.Close()
	failed := get(t, srv.Client(), srv.URL+"/_ADMIN/plugins").Body
	if !strings.Contains(failed, "undefinedGreeting") || strings.Contains(failed, `class="superseded"`) {
		t.Fatalf("after the failed build: want its diagnostic, not superseded\n%s", failed)
	}
	plugintest.WriteFile(t, src, "hello.go", good)
	waitEvent(loader.EventReloaded)
	reverted := get(t, srv.Client(), srv.URL+"/_ADMIN/plugins").Body
	if !strings.Contains(reverted, `class="superseded"`) || strings.Contains(reverted, "Latest attempt") {
		t.Fatalf("after the revert: want the failed build marked superseded and no current error\n%s", reverted)
	}
}
