package handlers

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// funcPlugins resolves every name to one handler.
type funcPlugins struct{ h *funcHandler }

type funcHandler struct {
	serve func(http.ResponseWriter, *http.Request) error
}

func (h *funcHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return h.serve(w, r) }

func (p funcPlugins) Resolve(context.Context, string, string, string) (Handler, error) {
	return p.h, nil
}
func (p funcPlugins) List() []loader.Info { return nil }

func servePlugin(serve func(http.ResponseWriter, *http.Request) error) funcPlugins {
	return funcPlugins{&funcHandler{serve}}
}

// TestFailureAfterTheResponseBegan: a middleware plugin or a plugin that
// panics after writing, with gzip on (the default), must not send 200
// with an error appended to the body: the connection is aborted, and the
// client sees a broken response.
func TestFailureAfterTheResponseBegan(t *testing.T) {
	tests := []struct {
		name       string
		middleware func(http.Handler) http.Handler
		plugin     func(http.ResponseWriter, *http.Request) error
	}{
		{"middleware panics", func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "partial")
				panic("middleware boom")
			})
		}, nil},
		{"plugin panics", nil, func(w http.ResponseWriter, r *http.Request) error {
			io.WriteString(w, "partial")
			return &loader.Error{Kind: loader.ErrPanic, Plugin: "p", Msg: "p panicked"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &plugintest.Log{}
			s := &Server{Log: zerolog.New(logs), Gzip: true, GzipMinBytes: 1024,
				Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error { io.WriteString(w, "fine"); return nil })}
			if tt.middleware != nil {
				s.Middleware = []func(http.Handler) http.Handler{tt.middleware}
			}
			if tt.plugin != nil {
				s.Plugins = servePlugin(tt.plugin)
			}
			srv := httptest.NewServer(s.Handler())
			defer srv.Close()
			srv.Config.ErrorLog = nil
			req, _ := http.NewRequest("GET", srv.URL+"/_PLUGIN/p/X", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr == nil {
					t.Fatalf("got a whole response: %d %q", resp.StatusCode, body)
				}
			}
			if ev := logs.Events(map[string]any{"message": "request failed"}); len(ev) != 1 {
				t.Errorf("the failure was not logged once: %s", logs)
			}
			if ev := logs.Events(map[string]any{"message": "request", "aborted": true}); len(ev) != 1 {
				t.Errorf("the access log does not mark the abort: %s", logs)
			}
		})
	}
}

// TestInformationalStatus: 103 Early Hints before 200 is logged and
// counted as 200.
func TestInformationalStatus(t *testing.T) {
	logs := &plugintest.Log{}
	s := &Server{Log: zerolog.New(logs), Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "ok")
		return nil
	})}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/_PLUGIN/p/X")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ev := logs.Events(map[string]any{"message": "request"})
	if len(ev) != 1 || ev[0]["status"] != float64(200) {
		t.Errorf("access log: %s", logs)
	}
}

// TestTimeoutOutcomes: a handler that outlives its timeout is a 504, a
// client that leaves first a 499 at debug; a response over the buffer's
// bound is refused, not held.
func TestTimeoutOutcomes(t *testing.T) {
	running := make(chan struct{}, 1)
	slow := func(w http.ResponseWriter, r *http.Request) error {
		running <- struct{}{}
		<-r.Context().Done()
		return nil
	}
	huge := func(w http.ResponseWriter, r *http.Request) error {
		chunk := make([]byte, 1<<20)
		for range MaxBufferedBytes>>20 + 1 {
			if _, err := w.Write(chunk); err != nil {
				return nil // a handler that ignores the error
			}
		}
		return nil
	}
	tests := []struct {
		name   string
		serve  func(http.ResponseWriter, *http.Request) error
		leave  bool
		status int
		level  string
		body   string
		limit  time.Duration
	}{
		{"timeout", slow, false, 504, "error", "did not answer in time", 200 * time.Millisecond},
		{"client leaves", slow, true, 499, "debug", "", time.Minute},
		{"over the buffer", huge, false, 500, "error", "the most a response under a timeout", time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &plugintest.Log{}
			s := &Server{Log: zerolog.New(logs).Level(zerolog.DebugLevel), Plugins: servePlugin(tt.serve), Configured: []string{"p"},
				Setup: func(string) PluginSetup { return PluginSetup{Timeout: tt.limit} }}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req := httptest.NewRequest("GET", "/_PLUGIN/p/X", nil).WithContext(ctx)
			go func() {
				select {
				case <-running: // the handler is in; leave if asked to
					if tt.leave {
						cancel()
					}
				case <-ctx.Done():
				}
			}()
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("%d %s, want %d with %q", rec.Code, rec.Body, tt.status, tt.body)
			}
			ev := logs.Events(map[string]any{"message": "request failed"})
			if len(ev) != 1 || ev[0]["level"] != tt.level {
				t.Errorf("want one %s 'request failed': %s", tt.level, logs)
			}
		})
	}
}

// TestChunkedBodyOverTheLimit: a body without Content-Length is cut at the
// limit, and the answer is 413 however the plugin took the read error.
func TestChunkedBodyOverTheLimit(t *testing.T) {
	ignoresError := func(w http.ResponseWriter, r *http.Request) error {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Read", "yes")
		_ = b
		return nil // writes nothing: a 200 would be implied
	}
	echoes := func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.Copy(w, r.Body) // writes, then meets the limit
		return err
	}
	reports := func(w http.ResponseWriter, r *http.Request) error {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "too big", http.StatusRequestEntityTooLarge)
		}
		return nil
	}
	tests := []struct {
		name   string
		serve  func(http.ResponseWriter, *http.Request) error
		global bool
		status int // 0: aborted
	}{
		{"global limit, plugin ignores the error", ignoresError, true, 413},
		{"plugin limit, plugin ignores the error", ignoresError, false, 413},
		{"plugin limit, plugin answered 200 first", echoes, false, 0},
		{"plugin limit, plugin answered the error", reports, false, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{Log: zerolog.Nop(), Plugins: servePlugin(tt.serve)}
			if tt.global {
				s.MaxBodyBytes = 1024
			} else {
				s.Configured = []string{"p"}
				s.Setup = func(string) PluginSetup { return PluginSetup{MaxBodyBytes: 1024} }
			}
			srv := httptest.NewServer(s.Handler())
			defer srv.Close()
			// An io.Reader of unknown length: the client sends it chunked.
			body := io.MultiReader(strings.NewReader(strings.Repeat("x", 64<<10)))
			req, _ := http.NewRequest("POST", srv.URL+"/_PLUGIN/p/X", body)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				if tt.status != 0 {
					t.Fatal(err)
				}
				return
			}
			got, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if req.ContentLength != 0 || req.TransferEncoding != nil && req.TransferEncoding[0] != "chunked" {
				t.Fatalf("the request was not chunked: %d %v", req.ContentLength, req.TransferEncoding)
			}
			switch {
			case tt.status == 0 && rerr == nil:
				t.Errorf("want an aborted response, got %d %q", resp.StatusCode, got)
			case tt.status != 0 && resp.StatusCode != tt.status:
				t.Errorf("status %d %q, want %d", resp.StatusCode, got, tt.status)
			}
		})
	}
}

// TestAccessLogClient: the access log names the client, through trusted
// proxies only.
func TestAccessLogClient(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct{ remote, forwarded, want string }{
		{"10.1.2.3:4000", "203.0.113.7", "203.0.113.7"},
		{"192.0.2.9:4000", "203.0.113.7", "192.0.2.9"}, // not a proxy of ours: the header is the client's word
		{"10.1.2.3:4000", "", "10.1.2.3"},
	}
	for _, tt := range tests {
		logs := &plugintest.Log{}
		s := &Server{Log: zerolog.New(logs), TrustedProxies: trusted, Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error { return nil })}
		req := httptest.NewRequest("GET", "/_PLUGIN/p/X", nil)
		req.RemoteAddr = tt.remote
		if tt.forwarded != "" {
			req.Header.Set("X-Forwarded-For", tt.forwarded)
		}
		s.Handler().ServeHTTP(httptest.NewRecorder(), req)
		if ev := logs.Events(map[string]any{"message": "request", "client": tt.want}); len(ev) != 1 {
			t.Errorf("%s via %s: want client %s: %s", tt.forwarded, tt.remote, tt.want, logs)
		}
	}
}
