package sse_test

import (
	"bufio"
	"context"
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
	"github.com/plugind/plugind/internal/sse"
)

// names formats every message as its name.
func names(m bus.Message) (string, []byte, bool) { return "", []byte(m.Name), true }

// newStreams serves two handlers of one Streams of max streams, "a" at
// /a and "b" at /b; closing the returned channel is the server's
// shutdown.
func newStreams(t *testing.T, max int) (*sse.Streams, *bus.Tap, *httptest.Server, *plugintest.Log, chan struct{}) {
	t.Helper()
	logs := &plugintest.Log{}
	tap := &bus.Tap{}
	closing := make(chan struct{})
	s := sse.New(sse.Options{Source: tap, Max: max, WriteTimeout: 300 * time.Millisecond, Closing: closing, Log: zerolog.New(logs)})
	mux := http.NewServeMux()
	mux.Handle("/a", s.Handler("a", names))
	mux.Handle("/b", s.Handler("b", names))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		select {
		case <-closing:
		default:
			close(closing)
		}
		srv.Close()
	})
	return s, tap, srv, logs, closing
}

// waitOpen waits, with a bound, until n streams are being served.
func waitOpen(t *testing.T, s *sse.Streams, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.Open() != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d", s.Open(), n)
		}
	}
}

// open opens a stream at url and reads its opening comment.
func open(t *testing.T, url string) (*http.Response, *bufio.Reader) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	r := bufio.NewReader(resp.Body)
	want := ": plugind " + url[strings.LastIndex(url, "/")+1:] + "\n"
	if line, _ := r.ReadString('\n'); resp.StatusCode != 200 || line != want || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v %q", resp.StatusCode, resp.Header, line)
	}
	return resp, r
}

// TestStreamsAreCapped: the cap counts the streams of every handler, and
// one past it gets 503 with Retry-After until a stream closes.
func TestStreamsAreCapped(t *testing.T) {
	s, _, srv, _, _ := newStreams(t, 2)
	first, _ := open(t, srv.URL+"/a")
	open(t, srv.URL+"/b")
	for _, path := range []string{"/a", "/b"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Retry-After") == "" ||
			string(body) != `{"error":"too many event streams: the limit is 2 (bus.maxstreams)"}`+"\n" {
			t.Errorf("%s over the limit: %d %v %s", path, resp.StatusCode, resp.Header, body)
		}
	}
	first.Body.Close()
	waitOpen(t, s, 1)
	open(t, srv.URL+"/a")
}

// TestStreamsSendFormattedMessages: what the format accepts is sent, as
// it says; the rest is left out.
func TestStreamsSendFormattedMessages(t *testing.T) {
	logs := &plugintest.Log{}
	tap := &bus.Tap{}
	s := sse.New(sse.Options{Source: tap, Max: 1, WriteTimeout: time.Second, Log: zerolog.New(logs)})
	srv := httptest.NewServer(s.Handler("x", func(m bus.Message) (string, []byte, bool) {
		return string(m.Kind), []byte(fmt.Sprintf("%q", m.Name)), m.Name != "skipped"
	}))
	t.Cleanup(srv.Close) // after the stream's, which open registers
	_, r := open(t, srv.URL+"/x")
	r.ReadString('\n') // the comment's blank line
	tap.Observe(bus.Message{Kind: bus.KindEvent, Name: "skipped"})
	tap.Observe(bus.Message{Kind: bus.KindEvent, Name: "sent"})
	var got []string
	for len(got) < 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%v after %q", err, got)
		}
		got = append(got, line)
	}
	if want := []string{"event: event\n", "data: \"sent\"\n", "\n"}; strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestStreamsEndAtShutdown: closing Closing ends every stream, so that
// none holds up the server's shutdown.
func TestStreamsEndAtShutdown(t *testing.T) {
	s, _, srv, _, closing := newStreams(t, 2)
	_, a := open(t, srv.URL+"/a")
	_, b := open(t, srv.URL+"/b")
	close(closing)
	for _, r := range []*bufio.Reader{a, b} {
		done := make(chan error, 1)
		go func() { _, err := io.Copy(io.Discard, r); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stream ended with %v, want its end", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a stream outlived the shutdown")
		}
	}
	waitOpen(t, s, 0)
}

// TestStreamDropsAClientThatStopsReading: a client that never reads
// fills the connection's buffers; the write that blocks then times out
// and the stream ends, logged, instead of holding its goroutine.
func TestStreamDropsAClientThatStopsReading(t *testing.T) {
	s, tap, srv, logs, _ := newStreams(t, 4)
	stall(t, srv.Listener.Addr().String(), "/a")
	waitOpen(t, s, 1)
	payload := strings.Repeat("x", 64<<10)
	deadline := time.Now().Add(20 * time.Second)
	for s.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a client that stopped reading still holds its stream: %s", logs)
		}
		tap.Observe(bus.Message{Kind: bus.KindEvent, Name: payload})
		time.Sleep(time.Millisecond) // pace the producer; the loop waits on s.Open
	}
	if ev := logs.Events(map[string]any{"message": "event stream dropped", "stream": "a"}); len(ev) != 1 {
		t.Errorf("the drop is not logged once: %s", logs)
	}
}

// stall opens a stream at path that never reads: a raw connection with
// a small receive buffer.
func stall(t *testing.T, addr, path string) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
}
