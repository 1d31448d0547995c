package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/admin"
	"github.com/plugind/plugind/bus"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/internal/sse"
	"github.com/plugind/plugind/loader"
)

// noPlugins is an empty plugin directory's listing.
type noPlugins struct{}

func (noPlugins) List() []loader.Info { return nil }

func TestEventStream(t *testing.T) {
	tap := &bus.Tap{}
	b := bus.New(tap.Observe)
	closing := make(chan struct{})
	streams := sse.New(sse.Options{Source: tap, Max: 4, WriteTimeout: 10 * time.Second, Closing: closing})
	srv := httptest.NewServer(admin.New(admin.Options{Plugins: noPlugins{}, Events: streams}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/_ADMIN/events", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() || lines.Text() != ": plugind admin" {
		t.Fatalf("first line %q, want the opening comment", lines.Text())
	}
	// The stream is open (its comment came after the tap subscription):
	// a plugin's own message is left out, the server's event comes through.
	if err := b.Publish(ctx, "shop.order", []byte(`{"id":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "plugind.plugin.build_failed", []byte(`{"plugin":"hello","error":"<b>x</b>"}`)); err != nil {
		t.Fatal(err)
	}
	var data string
	for lines.Scan() {
		if d, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
			data = d
			break
		}
	}
	var ev struct {
		Time    time.Time         `json:"time"`
		Name    string            `json:"name"`
		Payload map[string]string `json:"payload"`
	}
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		t.Fatalf("event %q: %v", data, err)
	}
	if ev.Name != "plugind.plugin.build_failed" || ev.Payload["plugin"] != "hello" || ev.Payload["error"] != "<b>x</b>" || ev.Time.IsZero() {
		t.Fatalf("first event %+v; want the server's build_failed (the plugin's message is not a server event)", ev)
	}

	// Shutdown ends the stream, so that it does not hold up the server.
	close(closing)
	for lines.Scan() {
	}
	if ctx.Err() != nil {
		t.Fatal("the stream did not end when the server began shutting down")
	}
}

// newLimitedStream serves the page with an event stream of at most max
// streams and a short write timeout.
func newLimitedStream(t *testing.T, max int) (*sse.Streams, *bus.Tap, *httptest.Server, *plugintest.Log) {
	t.Helper()
	logs := &plugintest.Log{}
	tap := &bus.Tap{}
	streams := sse.New(sse.Options{Source: tap, Max: max, WriteTimeout: 300 * time.Millisecond, Log: zerolog.New(logs)})
	srv := httptest.NewServer(admin.New(admin.Options{Plugins: noPlugins{}, Events: streams}))
	t.Cleanup(srv.Close)
	return streams, tap, srv, logs
}

// TestEventStreamIsCapped: the page's stream counts against the cap
// (bus.maxstreams, shared with /_EVENTS); past it, 503 with Retry-After.
func TestEventStreamIsCapped(t *testing.T) {
	_, _, srv, _ := newLimitedStream(t, 1)
	resp, err := http.Get(srv.URL + "/_ADMIN/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); resp.StatusCode != http.StatusOK || line != ": plugind admin\n" {
		t.Fatalf("first stream: %s %q", resp.Status, line)
	}
	over, err := http.Get(srv.URL + "/_ADMIN/events")
	if err != nil {
		t.Fatal(err)
	}
	defer over.Body.Close()
	if over.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("past the cap: %s %v", over.Status, over.Header)
	}
	body, _ := io.ReadAll(over.Body)
	if over.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many event streams") {
		t.Fatalf("past the cap: %s %v %s", over.Status, over.Header, body)
	}
}

// TestEventStreamDropsAStalledPage: a client that never reads is dropped
// once a write has waited the write timeout, instead of holding its
// goroutine and buffers for good.
func TestEventStreamDropsAStalledPage(t *testing.T) {
	streams, tap, srv, logs := newLimitedStream(t, 4)
	conn, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprint(conn, "GET /_ADMIN/events HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	for deadline := time.Now().Add(10 * time.Second); streams.Open() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stream never opened")
		}
	}
	// Server events (the page shows no others), large enough to fill the
	// connection's buffers soon.
	payload := []byte(`"` + strings.Repeat("x", 64<<10) + `"`)
	for deadline := time.Now().Add(20 * time.Second); streams.Open() != 0; time.Sleep(time.Millisecond) { // paces the producer
		if time.Now().After(deadline) {
			t.Fatalf("a page that stopped reading still holds its stream: %s", logs)
		}
		tap.Observe(bus.Message{Kind: bus.KindEvent, Name: "plugind.plugin.loaded", Payload: payload})
	}
	if ev := logs.Events(map[string]any{"message": "event stream dropped", "stream": "admin"}); len(ev) != 1 {
		t.Errorf("the drop is not logged once: %s", logs)
	}
}

func TestCurlLines(t *testing.T) {
	info := loader.Info{Name: "hello", State: loader.StateUnbuilt, Handlers: []loader.HandlerInfo{
		{Method: "GET", Func: "Hello", ABI: loader.ABILegacy},
		{Method: "POST", Func: "Create", ABI: loader.ABIStandard},
		{Method: "HEAD", Func: "Ping", ABI: loader.ABIStandard},
	}}
	tests := []struct {
		name, host string
		apiKey     bool
		want       []string
	}{
		{"plain", "example.com:3000", false, []string{
			"curl 'http://example.com:3000/_PLUGIN/hello/Hello'",
			"curl -X POST 'http://example.com:3000/_PLUGIN/hello/Create'",
			"curl -I 'http://example.com:3000/_PLUGIN/hello/Ping'",
		}},
		{"with a key", "[::1]:3000", true, []string{
			`curl -H "X-API-Key: $PLUGIND_API_KEY" 'http://[::1]:3000/_PLUGIN/hello/Hello'`,
		}},
		{"a host that would break out of the quotes", "x'$(id)'", false, []string{
			"curl 'http://localhost/_PLUGIN/hello/Hello'",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := admin.New(admin.Options{Plugins: fixed{info}, APIKey: tt.apiKey})
			req := httptest.NewRequest(http.MethodGet, "/_ADMIN/plugins", nil)
			req.Host = tt.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			doc, err := parseDoc(rec.Body.String())
			if err != nil {
				t.Fatal(err)
			}
			got := texts(doc.byClass("curl"))
			for _, want := range tt.want {
				if !slices.Contains(got, want) {
					t.Errorf("curl lines %q lack %q", got, want)
				}
			}
		})
	}
}

// fixed lists the given plugins.
type fixed []loader.Info

func (f fixed) List() []loader.Info { return f }

// TestPluginTextForOperators: what a plugin wrote about its failure and
// its health is on the page (its readers are operators), as text.
func TestPluginTextForOperators(t *testing.T) {
	info := loader.Info{Name: "db", State: loader.StateFailed, LastError: `plugin "db": Init failed`,
		LastErrorDetail: "<script>alert(1)</script> unreachable", Health: "<b>pool</b> exhausted"}
	rec := httptest.NewRecorder()
	admin.New(admin.Options{Plugins: fixed{info}}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/_ADMIN/plugins", nil))
	if strings.Contains(rec.Body.String(), "<script>") || strings.Contains(rec.Body.String(), "<b>") {
		t.Fatalf("plugin text became markup:\n%s", rec.Body)
	}
	doc, err := parseDoc(rec.Body.String())
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(doc.byClass("health")); !slices.Equal(got, []string{"<b>pool</b> exhausted"}) {
		t.Fatalf("health %q", got)
	}
	if got := texts(doc.byClass("detail")); !slices.Equal(got, []string{"<script>alert(1)</script> unreachable"}) {
		t.Fatalf("details %q", got)
	}
}
