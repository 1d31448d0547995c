package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

func TestEditUnderLoadFailsNoRequest(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	src := filepath.Join(dir, "src")
	// Version one only has to serve: the test's own, the same in every
	// run, so the shared cache builds it once. The edit is new in every
	// run: it is rebuilt under the load, which is what is tested.
	nonce := time.Now().UnixNano()
	source := func(mark any, answer string) string {
		return fmt.Sprintf("// %v\npackage main\n\nfunc GETVHandler() (string, int) { return %q, 200 }\n", mark, answer)
	}
	plugintest.WriteFile(t, src, "v.go", source(t.Name(), "one"))
	srv := startWith(t, dir, func(c *config.Config) { c.Plugins.Reload = config.ReloadOnChange })
	if got := srv.do(t, "GET", "/_PLUGIN/v/V", ""); got.body != "one" {
		t.Fatalf("v1: %d %s", got.status, got.body)
	}

	var requests, failed atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	stop := plugintest.Busy(8, func() {
		requests.Add(1)
		resp, err := client.Get(srv.url + "/_PLUGIN/v/V")
		if err != nil {
			failed.Add(1)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failed.Add(1)
		}
	})
	edited := time.Now()
	plugintest.WriteFile(t, src, "v.go", source(nonce, "two"))
	for srv.do(t, "GET", "/_PLUGIN/v/V", "").body != "two" {
		if time.Since(edited) > 20*time.Second {
			t.Fatal("the edit was never served")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("edit -> new code in %s", time.Since(edited).Round(time.Millisecond))
	waitCount(t, &requests, requests.Load()+50) // the load goes on past the swap
	stop()
	if failed.Load() != 0 || requests.Load() < 100 {
		t.Errorf("%d of %d requests failed during the reload", failed.Load(), requests.Load())
	}
	if len(srv.logs.Events(map[string]any{"plugin": "v", "message": "plugin reloaded"})) != 1 {
		t.Errorf("no reload logged: %s", srv.logs)
	}
}

func TestRestartIsServedFromTheCache(t *testing.T) {
	dir := plugintest.PluginPath(t)
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "cached.go",
		plugintest.Unique(t, "package main\n\nfunc GETCHandler() string { return \"c\" }\n"))
	first := start(t, dir, false)
	if got := first.do(t, "GET", "/_PLUGIN/cached/C", ""); got.status != 200 {
		t.Fatalf("first server: %d %s", got.status, got.body)
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	second := start(t, dir, false)
	began := time.Now()
	got := second.do(t, "GET", "/_PLUGIN/cached/C", "")
	took := time.Since(began)
	if got.status != 200 || second.builds("cached") != 0 {
		t.Errorf("after restart: %d, %d builds; want 200 and no compiler run", got.status, second.builds("cached"))
	}
	t.Logf("first call after restart: %s", took)
}

func TestInitFailureLeavesTheServerServing(t *testing.T) {
	// Most of it is waiting, on the hang's timeout above all: in
	// parallel with the other tests that wait (no other parallel test
	// calls these plugins in this process).
	t.Parallel()
	dir := plugintest.PluginPath(t, "initpanic", "inithang", "hello")
	// A hang can only be told by a timeout, kept short for it alone.
	hasty := startWith(t, dir, func(c *config.Config) { c.Plugins.LoadCheckTimeout = 2 * time.Second })
	got := hasty.do(t, "GET", "/_PLUGIN/inithang/Hello", "")
	if got.status != 500 || !strings.Contains(got.body, "did not finish within 2s") || !strings.Contains(got.body, `"plugin":"inithang"`) {
		t.Errorf("inithang: %d %s", got.status, got.body)
	}
	srv := start(t, dir, false)
	got = srv.do(t, "GET", "/_PLUGIN/initpanic/Hello", "")
	if got.status != 500 || !strings.Contains(got.body, "an init function panicked") || strings.Contains(got.body, "exploded") || !strings.Contains(got.body, `"plugin":"initpanic"`) {
		t.Errorf("initpanic: %d %s", got.status, got.body)
	}
	// The panic's value is the plugin's text: in debug mode, it is shown.
	debug := start(t, dir, true)
	if got := debug.do(t, "GET", "/_PLUGIN/initpanic/Hello", ""); got.status != 500 || !strings.Contains(got.body, `"detail":"init exploded on purpose"`) {
		t.Errorf("initpanic, debug: %d %s", got.status, got.body)
	}
	for _, s := range []*running{hasty, srv} {
		if got := s.do(t, "GET", "/_PLUGIN/hello/Hello", ""); got.status != 200 {
			t.Errorf("after init failures: %d %s", got.status, got.body)
		}
	}
}

func TestAdminListing(t *testing.T) {
	srv := start(t, plugintest.PluginPath(t, "hello", "report"), false)
	srv.do(t, "GET", "/_PLUGIN/hello/Hello", "")
	got := srv.do(t, "GET", "/_PLUGINS", "")
	var listing struct {
		Plugins []loader.Info `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(got.body), &listing); err != nil || got.status != 200 {
		t.Fatalf("listing: %d %s %v", got.status, got.body, err)
	}
	states := map[string]loader.State{}
	for _, p := range listing.Plugins {
		states[p.Name] = p.State
	}
	if states["hello"] != loader.StateReady || states["report"] != loader.StateUnbuilt || len(states) != 2 {
		t.Errorf("states = %v", states)
	}
	if got := srv.do(t, "POST", "/_PLUGINS", ""); got.status != 405 || !json.Valid([]byte(got.body)) {
		t.Errorf("POST /_PLUGINS = %d %s", got.status, got.body)
	}
}

func TestReadyzReportsWarmUp(t *testing.T) {
	t.Parallel() // it waits on a held warm-up; it loads no plugin
	goCmd, release := heldGo(t)
	srv := startWith(t, plugintest.PluginPath(t), func(c *config.Config) {
		c.Plugins.WarmUp = true
		c.Plugins.Go = goCmd
		c.Plugins.CacheDir = t.TempDir()
	})
	waitWarmUp(t, srv, "running") // held: ready, and says so
	release()
	waitWarmUp(t, srv, "done")
}

// waitCount waits, with a bound, until n reaches at least want.
func waitCount(t *testing.T, n *atomic.Int64, want int64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); n.Load() < want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("count %d never reached %d", n.Load(), want)
		}
	}
}
