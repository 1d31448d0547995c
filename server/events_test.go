package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/bus"
	"github.com/plugind/plugind/internal/plugintest"
)

func newStreams(t *testing.T, max int) (*eventStreams, *httptest.Server, *plugintest.Log) {
	t.Helper()
	logs := &plugintest.Log{}
	closing := make(chan struct{})
	e := &eventStreams{tap: &bus.Tap{}, max: max, writeTimeout: 300 * time.Millisecond, closing: closing, log: zerolog.New(logs)}
	srv := httptest.NewServer(e)
	t.Cleanup(func() { close(closing); srv.Close() })
	return e, srv, logs
}

// waitOpen waits, with a bound, until n streams are being served.
func waitOpen(t *testing.T, e *eventStreams, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); e.open.Load() != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d", e.open.Load(), n)
		}
	}
}

func TestEventStreamsAreCapped(t *testing.T) {
	e, srv, _ := newStreams(t, 2)
	var open []*http.Response
	for range 2 {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); resp.StatusCode != 200 || line != ": plugind bus\n" {
			t.Fatalf("stream: %d %q", resp.StatusCode, line)
		}
		open = append(open, resp)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Retry-After") == "" ||
		string(body) != `{"error":"too many event streams: the limit is 2 (bus.maxstreams)"}`+"\n" {
		t.Errorf("over the limit: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	open[0].Body.Close()
	waitOpen(t, e, 1)
	resp, err = http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after a stream closed: %d", resp.StatusCode)
	}
}

// TestEventStreamDropsAClientThatStopsReading: a client that never reads
// fills the connection's buffers; the write that blocks then times out
// and the stream ends, logged, instead of holding its goroutine.
func TestEventStreamDropsAClientThatStopsReading(t *testing.T) {
	e, srv, logs := newStreams(t, 4)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitOpen(t, e, 1)
	payload := []byte(`"` + strings.Repeat("x", 64<<10) + `"`)
	deadline := time.Now().Add(20 * time.Second)
	for e.open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a client that stopped reading still holds its stream: %s", logs)
		}
		e.tap.Observe(bus.Message{Kind: bus.KindEvent, Name: "big", Payload: payload})
		time.Sleep(time.Millisecond) // pace the producer; the loop waits on e.open
	}
	if len(logs.Events(map[string]any{"message": "event stream dropped"})) != 1 {
		t.Errorf("the drop is not logged once: %s", logs)
	}
}
