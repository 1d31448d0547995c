package handlers

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/metrics"
)

// TestLayerAllocs holds the layers to what they must allocate per
// request: nothing over the handler's own for security headers, the gzip
// layer when the client accepts no compression, the plugin route's
// dispatch, the plugin handler without limits and the metrics.
func TestLayerAllocs(t *testing.T) {
	s := benchServer(false)
	s.Auth, _ = auth.New(auth.Config{})
	rs := s.routes()
	rs[0].serve, rs[0].class = trivial, auth.Public
	m := metrics.New(func() []loader.Stat { return nil })
	tests := []struct {
		name  string
		h     http.Handler
		r     *http.Request
		extra float64
	}{
		{"security headers", s.securityHeaders(trivial), benchRequest(), 0},
		{"gzip, not accepted", s.compress(trivial), benchRequest(), 0},
		{"plugin route dispatch", s.dispatch(rs), withInfo(benchRequest()), 0},
		{"auth, none configured", s.guard(auth.Plugin, trivial), withInfo(benchRequest()), 0},
		// Resolve, the plugin's state and the sdk env, which the
		// request's info holds: no context, request copy or map.
		{"plugin handler, no limits", http.HandlerFunc(benchServer(true).plugin), withInfo(benchRequest()), 0},
		{"metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.Started()
			defer m.Done()
			m.Request("hello", "Hello", http.MethodGet, http.StatusOK, time.Millisecond)
			trivial(w, r)
		}), benchRequest(), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := testing.AllocsPerRun(200, func() { trivial(&benchWriter{h: http.Header{}}, tt.r) })
			tt.h.ServeHTTP(&benchWriter{h: http.Header{}}, tt.r) // first use: caches fill
			got := testing.AllocsPerRun(200, func() {
				w := &benchWriter{h: http.Header{}}
				tt.h.ServeHTTP(w, tt.r)
			})
			if got > base+tt.extra {
				t.Errorf("%v allocs per request; want at most %v (the handler's own %v + %v)", got, base+tt.extra, base, tt.extra)
			}
		})
	}
}

// TestCompressSkip: a client that accepts no compression gets the body
// as written, with Vary: Accept-Encoding; one that accepts gzip or zstd
// gets it compressed.
func TestCompressSkip(t *testing.T) {
	s := &Server{Gzip: true, GzipMinBytes: 10}
	body := strings.Repeat("hello ", 100)
	h := s.compress(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}))
	tests := []struct{ accept, encoding string }{
		{"", ""},
		{"identity", ""},
		{"br", ""},
		{"gzip", "gzip"},
		{"GZIP;q=1", "gzip"},
		{"zstd", "zstd"},
		{"*", ""}, // gzhttp itself does not compress for a bare *
		{"gzip;q=0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.accept, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tt.accept != "" {
				r.Header.Set("Accept-Encoding", tt.accept)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if got := w.Header().Get("Content-Encoding"); got != tt.encoding {
				t.Errorf("Content-Encoding %q; want %q", got, tt.encoding)
			}
			if got := w.Header().Values("Vary"); len(got) != 1 || got[0] != "Accept-Encoding" {
				t.Errorf("Vary %q; want [Accept-Encoding]", got)
			}
			if tt.encoding == "" && w.Body.String() != body {
				t.Errorf("body %q...; want the handler's", w.Body.String()[:min(20, w.Body.Len())])
			}
		})
	}
}

// TestConcurrencyLimitAllocs: taking and giving back a concurrency slot
// allocates nothing.
func TestConcurrencyLimitAllocs(t *testing.T) {
	allocs := func(max int) float64 {
		s := benchServer(true)
		s.Setup = func(string) PluginSetup { return PluginSetup{MaxConcurrency: max} }
		h, r := http.HandlerFunc(s.plugin), withInfo(benchRequest())
		h.ServeHTTP(&benchWriter{h: http.Header{}}, r) // the state and the composed handler
		return testing.AllocsPerRun(200, func() { h.ServeHTTP(&benchWriter{h: http.Header{}}, r) })
	}
	if off, on := allocs(0), allocs(10); on > off {
		t.Errorf("%v allocs per request with a concurrency limit, %v without", on, off)
	}
}
