package handlers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/loader"
)

// checkedPlugins checks the names of a call as every Plugins does (the
// loader's Resolve, isolated plugins), then resolves it to p's handler.
type checkedPlugins struct{ funcPlugins }

func (p checkedPlugins) Resolve(ctx context.Context, file, fn, method string) (Handler, error) {
	if err := loader.CheckCall(file, fn, method); err != nil {
		return nil, err
	}
	return p.funcPlugins.Resolve(ctx, file, fn, method)
}

// TestEncodedSlashPluginPaths: a path under /_PLUGIN/ with an encoded
// slash is refused with a JSON 400, as the README's error table says,
// also when its decoded form is unclean: mux cleaned
// /_PLUGIN/hello/..%2F..%2F_PLUGINS (decoded /_PLUGIN/hello/../../_PLUGINS)
// and answered a 301 to /_PLUGINS, out of the plugin namespace. Literal
// dot segments and double slashes keep the documented redirect to their
// cleaned form. No plugin is called for any of them.
func TestEncodedSlashPluginPaths(t *testing.T) {
	var calls atomic.Int32
	s := &Server{Log: zerolog.Nop(), Plugins: checkedPlugins{servePlugin(func(w http.ResponseWriter, r *http.Request) error {
		calls.Add(1)
		io.WriteString(w, "called")
		return nil
	})}}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	tests := []struct {
		path     string // as sent, byte for byte
		want     int
		location string // of a redirect
	}{
		{"/_PLUGIN/..%2F..%2Fetc/Hello", http.StatusBadRequest, ""},
		{"/_PLUGIN/hello/..%2F..%2F_PLUGINS", http.StatusBadRequest, ""},
		{"/_PLUGIN/hello/..%2f..%2f_PLUGINS", http.StatusBadRequest, ""},
		{"/_PLUGIN/%2E%2E%2F_PLUGINS/x", http.StatusBadRequest, ""},
		{"/_PLUGIN/hel%2Flo/Hello", http.StatusBadRequest, ""},
		{"/_PLUGIN/hello/Hel%2Flo", http.StatusBadRequest, ""},
		{"/_PLUGIN/a/../hello/Hello", http.StatusMovedPermanently, "/_PLUGIN/hello/Hello"},
		{"/_PLUGIN//Hello", http.StatusMovedPermanently, "/_PLUGIN/Hello"},
		{"/_PLUGIN/hello/Hello", http.StatusOK, ""}, // the one shape that reaches a plugin
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			calls.Store(0)
			req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = tt.path // sent as it is: no client-side cleaning or escaping
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("GET %s = %d (Location %q) %s, want %d", tt.path, resp.StatusCode, resp.Header.Get("Location"), body, tt.want)
			}
			if tt.want == http.StatusMovedPermanently {
				if got := resp.Header.Get("Location"); got != tt.location || calls.Load() != 0 {
					t.Errorf("GET %s: Location %q, %d plugin calls; want %q, none", tt.path, got, calls.Load(), tt.location)
				}
				return
			}
			if tt.want == http.StatusOK {
				if calls.Load() != 1 {
					t.Errorf("GET %s called the plugin %d times, want 1", tt.path, calls.Load())
				}
				return
			}
			if calls.Load() != 0 {
				t.Errorf("GET %s called the plugin", tt.path)
			}
			var e errorBody
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" || json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("GET %s answered %s %q, want a JSON error", tt.path, ct, body)
			}
		})
	}
}

// TestTimeoutNamesThePlugin: a 504 names its plugin in the JSON body, as
// every other plugin error does.
func TestTimeoutNamesThePlugin(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := &Server{Log: zerolog.Nop(),
		Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return nil
		}),
		Setup: func(string) PluginSetup { return PluginSetup{Timeout: 50 * time.Millisecond} },
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/_PLUGIN/sleepy/Nap")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e errorBody
	if resp.StatusCode != http.StatusGatewayTimeout || json.Unmarshal(body, &e) != nil || e.Plugin != "sleepy" || e.Error == "" {
		t.Errorf("= %d %s; want 504 with a JSON error naming plugin sleepy", resp.StatusCode, body)
	}
}
