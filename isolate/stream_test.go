package isolate_test

import (
	"bufio"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/plugind/plugind/internal/plugintest"
)

// TestIsolatedFlush: a plugin's flush reaches the client through the
// server's proxy while the plugin still holds the response open, as it
// does in-process: for a chunked body and for server-sent events.
func TestIsolatedFlush(t *testing.T) {
	h := newHarness(t, config{isolated: []string{"stream"}}, "stream")
	h.waitFor(t, "/_PLUGIN/stream/Ping", http.StatusOK, plugintest.BuildWait)
	tests := []struct {
		path, first string
	}{
		{"/_PLUGIN/stream/Lines", "first\n"},
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
		})
	}
}
