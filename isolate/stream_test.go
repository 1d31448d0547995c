package isolate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plugind/plugind/internal/plugintest"
)

// TestIsolatedFlush: a plugin's flush reaches the client through the
// server's proxy while the plugin still holds the response open, as it
// does in-process: for a chunked body, a body of the length the plugin
// declared, and server-sent events.
func TestIsolatedFlush(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"stream"}}, "stream")
	h.waitFor(t, "/_PLUGIN/stream/Ping", http.StatusOK, plugintest.BuildWait)
	tests := []struct {
		path, first string
	}{
		{"/_PLUGIN/stream/Lines", "first\n"},
		{"/_PLUGIN/stream/Sized", "first\n"},
		{"/_PLUGIN/stream/Events", "data: first\n"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel() // the plugin returns when the client leaves
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan string, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					got <- "error: " + err.Error()
					return
				}
				defer resp.Body.Close()
				line, err := bufio.NewReader(resp.Body).ReadString('\n')
				if err != nil {
					line = "error: " + err.Error()
				}
				got <- line
			}()
			// The plugin holds the rest for 10 s: the first part within 5 s
			// came from its flush.
			select {
			case line := <-got:
				if line != tt.first {
					t.Fatalf("first line %q, want %q", line, tt.first)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("the first part did not arrive in 5 s: the plugin's flush stopped at the proxy")
			}
			// A client leaving a stream is no event: once the call is over,
			// the proxy has said nothing of it.
			cancel()
			for deadline := time.Now().Add(10 * time.Second); h.m.Stat("stream").InFlight != 0; {
				if time.Now().After(deadline) {
					t.Fatal("the call still in flight 10 s after the client left")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if evs := h.log.Events(map[string]any{"plugin": "stream", "component": "proxy"}); len(evs) != 0 {
				t.Errorf("the proxy logged a client that left: %v", evs)
			}
		})
	}
}

// TestIsolatedCutShort: a child that dies halfway through an answer
// leaves the client with an error, not an answer that looks whole, and
// the proxy's word on it reaches the server's log with the plugin's name.
func TestIsolatedCutShort(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"crashy"}}, "crashy")
	h.waitFor(t, "/_PLUGIN/crashy/Ok", http.StatusOK, plugintest.BuildWait)
	resp, err := http.Get(h.url + "/_PLUGIN/crashy/Half")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(got) != "half." || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("status %d, body %q, error %v: want 200, the half sent, then io.ErrUnexpectedEOF", resp.StatusCode, got, err)
	}
	match := map[string]any{"plugin": "crashy", "component": "proxy"}
	for deadline := time.Now().Add(10 * time.Second); len(h.log.Events(match)) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no proxy event with the plugin's name in 10 s; log:\n%s", h.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ev := h.log.Events(match)[0]; !strings.Contains(fmt.Sprint(ev["message"]), "body copy") {
		t.Errorf("proxy event %v, want one about the body copy", ev)
	}
}
