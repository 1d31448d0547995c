//go:build !race

// These tests run without the race detector (make test runs them in a
// second pass): with plugin code listening to server events on the event
// goroutine, ThreadSanitizer sometimes aborts the process with "failed
// to restore address" while recording a stack that runs through plugin
// code, before it can print anything. The bus and its swap guarantee are
// tested under -race in package bus.

package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/plugintest"
)

func TestBusBetweenPlugins(t *testing.T) {
	srv := startConfig(t, loadConfig(t, plugintest.PluginPath(t, "ledger", "shop", "grumpy", "hello"), ""))
	// Subscribers subscribe in Init: load them first.
	srv.do(t, "GET", "/_PLUGIN/ledger/Loaded", "")
	srv.do(t, "GET", "/_PLUGIN/grumpy/Hello", "")
	if got := srv.do(t, "POST", "/_PLUGIN/shop/Reset", ""); got.status != 200 {
		t.Fatalf("command across plugins: %d %s", got.status, got.body)
	}
	for range 3 {
		got := srv.do(t, "POST", "/_PLUGIN/ledger/Order?item=tea", "")
		// grumpy's listener panics; the publisher hears of it and carries on.
		if got.status != 200 || !strings.Contains(got.body, `"listener_errors":true`) {
			t.Errorf("publish past a panicking listener: %d %s", got.status, got.body)
		}
	}
	if got := srv.do(t, "GET", "/_PLUGIN/ledger/Total", ""); got.body != "{\"total\":3}\n" {
		t.Errorf("query: %s", got.body)
	}
	if got := srv.do(t, "POST", "/_PLUGIN/shop/Refund", ""); got.status != 501 {
		t.Errorf("a command without a handler must be sdk.ErrHandlerNotFound in the plugin: %d %s", got.status, got.body)
	}
	if got := srv.do(t, "POST", "/_PLUGIN/shop/Subscribe", ""); got.body != "true" {
		t.Errorf("subscribing from a request must be refused: %s", got.body)
	}
	// Server events: ledger hears of plugins loaded after it.
	srv.do(t, "GET", "/_PLUGIN/hello/Hello", "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		var loaded []string
		json.Unmarshal([]byte(srv.do(t, "GET", "/_PLUGIN/ledger/Loaded", "").body), &loaded)
		if slices.Contains(loaded, "hello") && slices.Contains(loaded, "shop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger heard of %v; want shop and hello (plugind.plugin.loaded)", loaded)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(srv.do(t, "GET", "/metrics", "").body, `plugind_bus_messages_total{kind="event",name="order.placed"} 3`) {
		t.Error("bus traffic is not in the metrics")
	}
}

// TestDeliveryAcrossReload publishes ticks without pause while the
// subscriber is edited twice: every tick that was published reached
// exactly one version (both versions forward to tally, which counts).
func TestDeliveryAcrossReload(t *testing.T) {
	dir := plugintest.PluginPath(t, "tally", "pub")
	src := filepath.Join(dir, "src")
	// Version 1 only has to subscribe: the test's own, the same in every
	// run, so the shared cache builds it once. The edits are new in every
	// run: they are rebuilt while the ticks flow.
	nonce := time.Now().UnixNano()
	sub := func(version int) string {
		var mark any = nonce
		if version == 1 {
			mark = t.Name()
		}
		return fmt.Sprintf(`// %v version %d
package main

import (
	"context"

	"github.com/plugind/plugind/sdk"
)

func Init(ctx context.Context) error {
	return sdk.Subscribe(ctx, "tick", func(ctx context.Context, _ struct{}) error {
		return sdk.Dispatch(ctx, "tally.add", struct{}{})
	})
}

func GETVersionHandler() string { return "%d" }
`, mark, version, version)
	}
	plugintest.WriteFile(t, src, "sub.go", sub(1))
	srv := startWith(t, dir, func(c *config.Config) { c.Plugins.Reload = config.ReloadOnChange })
	srv.do(t, "GET", "/_PLUGIN/tally/Count", "")
	if got := srv.do(t, "GET", "/_PLUGIN/sub/Version", ""); got.body != "1" {
		t.Fatalf("sub v1: %d %s", got.status, got.body)
	}
	before := srv.do(t, "GET", "/_PLUGIN/tally/Count", "").body

	var ticks, failures atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	stop := plugintest.Busy(4, func() {
		resp, err := client.Post(srv.url+"/_PLUGIN/pub/Tick", "", nil)
		if err != nil {
			failures.Add(1)
			return
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			ticks.Add(1)
		} else {
			failures.Add(1)
		}
	})
	for v := 2; v <= 3; v++ {
		waitCount(t, &ticks, ticks.Load()+20) // ticks flow before the edit
		plugintest.WriteFile(t, src, "sub.go", sub(v))
		deadline := time.Now().Add(20 * time.Second)
		for srv.do(t, "GET", "/_PLUGIN/sub/Version", "").body != fmt.Sprint(v) {
			if time.Now().After(deadline) {
				t.Fatalf("version %d never served", v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCount(t, &ticks, ticks.Load()+20) // and after the last swap
	stop()
	var b, after int64
	fmt.Sscan(before, &b)
	fmt.Sscan(srv.do(t, "GET", "/_PLUGIN/tally/Count", "").body, &after)
	if after-b != ticks.Load() || failures.Load() != 0 {
		t.Errorf("%d ticks published (%d failed) across two reloads, %d delivered: want exactly one delivery each", ticks.Load(), failures.Load(), after-b)
	}
	t.Logf("%d ticks across two reloads", ticks.Load())
}

func TestEventStream(t *testing.T) {
	srv := startConfig(t, loadConfig(t, plugintest.PluginPath(t, "ledger"), "[bus]\nevents = true\n"))
	srv.do(t, "GET", "/_PLUGIN/ledger/Total", "")
	resp, err := http.Get(srv.url + "/_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	go func() {
		if resp, err := http.Post(srv.url+"/_PLUGIN/ledger/Order?item=tea", "", nil); err == nil {
			resp.Body.Close()
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	deadline := time.AfterFunc(5*time.Second, func() { resp.Body.Close() })
	defer deadline.Stop()
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") && strings.Contains(line, `"name":"order.placed"`) {
			if !strings.Contains(line, `"payload":{"item":"tea"}`) || !strings.Contains(line, `"delivered":1`) {
				t.Errorf("event line %s", line)
			}
			// An open stream does not hold up the shutdown.
			began := time.Now()
			if err := srv.stop(); err != nil || time.Since(began) > 5*time.Second {
				t.Errorf("shutdown with a stream open: %v after %s", err, time.Since(began))
			}
			return
		}
	}
	t.Fatal("order.placed never came through /_EVENTS")
}

func TestEventStreamIsOffByDefault(t *testing.T) {
	srv := startConfig(t, loadConfig(t, plugintest.PluginPath(t), ""))
	if got := srv.do(t, "GET", "/_EVENTS", ""); got.status != 404 {
		t.Errorf("/_EVENTS without bus.events: %d", got.status)
	}
}

// TestBusStartUpEventsReachPluginsThatSubscribeLater: plugind.plugin.
// registered and plugind.server.starting are published before any plugin
// is loaded; a plugin that subscribes in Init, loaded on its first
// request, still sees each of them once.
func TestBusStartUpEventsReachPluginsThatSubscribeLater(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	writeObserver(t, filepath.Join(dir, "src"), "plugind.plugin.registered", "plugind.server.starting")
	srv := startConfig(t, loadConfig(t, dir, ""))
	got := srv.do(t, "GET", "/_PLUGIN/observer/Seen", "")
	var seen []string
	if err := json.Unmarshal([]byte(got.body), &seen); err != nil {
		t.Fatalf("Seen: %d %s", got.status, got.body)
	}
	slices.Sort(seen)
	want := []string{"plugind.plugin.registered hello file", "plugind.plugin.registered observer file", "plugind.server.starting " + srv.addr}
	if !slices.Equal(seen, want) {
		t.Errorf("a plugin loaded after start-up saw %q, want %q", seen, want)
	}
}

// TestBusRuntimeRegistration: a plugin added while the server runs
// (hot reload on) is announced on the bus as those found at start are,
// plugind.plugin.registered with its name and kind.
func TestBusRuntimeRegistration(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	src := filepath.Join(dir, "src")
	writeObserver(t, src, "plugind.plugin.registered")
	srv := startConfig(t, loadConfig(t, dir, "[plugins]\nreload = \"on-change\"\n"))
	if a := srv.do(t, "GET", "/_PLUGIN/observer/Seen", ""); a.status != http.StatusOK {
		t.Fatalf("Seen: %d %s", a.status, a.body)
	}
	plugintest.WriteFile(t, src, "late.go", "package main\n\nfunc GETLateHandler() string { return \"late\" }\n")
	want := "plugind.plugin.registered late file"
	var got []string
	for deadline := time.Now().Add(20 * time.Second); !slices.Contains(got, want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the observer saw %q, want %q among them within 20 s", got, want)
		}
		a := srv.do(t, "GET", "/_PLUGIN/observer/Seen", "")
		got = nil
		if err := json.Unmarshal([]byte(a.body), &got); err != nil {
			t.Fatalf("Seen: %d %s", a.status, a.body)
		}
	}
	if n := len(srv.logs.Events(map[string]any{"message": "plugin registered", "plugin": "late", "kind": "file"})); n != 1 {
		t.Errorf("%d \"plugin registered\" log lines for late; want 1", n)
	}
}

// writeObserver writes observer.go into src: a plugin that subscribes in
// Init to each of names and answers GET /_PLUGIN/observer/Seen with what
// it saw, "NAME PLUGIN KIND" or "NAME ADDR" each.
func writeObserver(t *testing.T, src string, names ...string) {
	t.Helper()
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	plugintest.WriteFile(t, src, "observer.go", plugintest.Own(t, `package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	"github.com/plugind/plugind/sdk"
)

var (
	mu   sync.Mutex
	seen []string
)

func Init(ctx context.Context) error {
	for _, name := range []string{`+strings.Join(quoted, ", ")+`} {
		if err := sdk.Subscribe(ctx, name, func(_ context.Context, e struct{ Plugin, Kind, Addr string }) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, name+" "+strings.TrimSpace(e.Plugin+" "+e.Kind+" "+e.Addr))
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

func GETSeenHandler() string {
	mu.Lock()
	defer mu.Unlock()
	out, _ := json.Marshal(seen)
	return string(out)
}
`))
}
