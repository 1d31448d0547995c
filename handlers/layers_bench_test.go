package handlers

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/auth"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/metrics"
)

// The layer benchmarks measure each layer of the request path alone,
// around a trivial handler, and the whole chain: `make bench` prints them
// as one table (internal/cmd/benchtable), each layer's cost being its
// ns/op and allocs/op less BenchmarkLayer/none's.

// benchBody is what lib/src/hello.go answers to ?abc=123.
var benchBody = []byte(`{"http_vars":{"file":"hello","func":"Hello"},"url_query":{"abc":["123"]},"msg":"Hello plugin caller!"}`)

// benchWriter is a ResponseWriter that keeps nothing but its header map,
// cleared between requests, so that a benchmark counts the layer's
// allocations and not the recorder's.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.status = code }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) reset()                      { clear(w.h); w.status = 0 }

// trivial answers hello's body.
var trivial = http.HandlerFunc(trivialServe)

func trivialServe(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(benchBody)
}

// benchPlugins resolves every function to one handler answering hello's
// body through the Handler interface, as a standard-ABI plugin does.
type benchPlugins struct{ h Handler }

func (p benchPlugins) Resolve(context.Context, string, string, string) (Handler, error) {
	return p.h, nil
}
func (benchPlugins) List() []loader.Info { return nil }

// trivialPlugin is trivial as a plugin handler: a pointer, comparable,
// as Resolve's handlers must be.
type trivialPlugin struct{}

func (*trivialPlugin) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	trivial(w, r)
	return nil
}

var trivialHandler Handler = &trivialPlugin{}

// benchServer is the default configuration's server (security headers,
// gzip, metrics) logging to io.Discard; bare turns those off.
func benchServer(bare bool) *Server {
	s := &Server{
		Plugins:         benchPlugins{trivialHandler},
		Log:             zerolog.New(io.Discard),
		SecurityHeaders: !bare,
		Gzip:            !bare,
		GzipMinBytes:    1024,
		MetricsPath:     "/metrics",
	}
	if !bare {
		s.Metrics = metrics.New(func() []loader.Stat { return nil })
	}
	return s
}

func benchRequest(header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/_PLUGIN/hello/Hello?abc=123", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

// withInfo is r as the access layer passes it on.
func withInfo(r *http.Request) *http.Request {
	info := &requestInfo{Context: r.Context(), id: "bench"}
	info.file, info.fn, info.pluginRoute = splitPluginPath(r.URL.Path)
	info.named = info.pluginRoute
	return r.WithContext(info)
}

func serveBench(b *testing.B, h http.Handler, r *http.Request) {
	b.Helper()
	w := &benchWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, r)
	}
	if w.status != 0 && w.status != http.StatusOK {
		b.Fatalf("status %d", w.status)
	}
}

// BenchmarkLayer measures each layer alone around trivial.
func BenchmarkLayer(b *testing.B) {
	b.Run("none", func(b *testing.B) { serveBench(b, trivial, benchRequest()) })
	b.Run("access_log", func(b *testing.B) {
		// A client-sent id: the id is not generated, only checked.
		s := benchServer(true)
		serveBench(b, s.access(trivial), benchRequest("X-Request-Id", "abc"))
	})
	b.Run("request_id", func(b *testing.B) {
		s := benchServer(true)
		w := &benchWriter{h: make(http.Header)}
		r := benchRequest()
		info := &requestInfo{}
		b.ReportAllocs()
		for b.Loop() {
			w.reset()
			s.requestID(w.h, r, info, time.Now())
		}
	})
	b.Run("metrics", func(b *testing.B) {
		m := metrics.New(func() []loader.Stat { return nil })
		b.ReportAllocs()
		for b.Loop() {
			m.Started()
			m.Request("hello", "Hello", http.MethodGet, http.StatusOK, time.Millisecond)
			m.Done()
		}
	})
	b.Run("security_headers", func(b *testing.B) {
		s := benchServer(false)
		serveBench(b, s.securityHeaders(trivial), benchRequest())
	})
	b.Run("gzip_accepted", func(b *testing.B) {
		s := benchServer(false)
		serveBench(b, s.compress(trivial), benchRequest("Accept-Encoding", "gzip"))
	})
	b.Run("gzip_not_accepted", func(b *testing.B) {
		s := benchServer(false)
		serveBench(b, s.compress(trivial), benchRequest())
	})
	b.Run("cors", func(b *testing.B) {
		s := benchServer(true)
		s.CORS = CORSPolicy{Origins: []string{"https://example.com"}}
		serveBench(b, s.corsHandler(trivial), withInfo(benchRequest("Origin", "https://example.com")))
	})
	b.Run("cors_off", func(b *testing.B) {
		s := benchServer(true)
		serveBench(b, s.corsHandler(trivial), withInfo(benchRequest("Origin", "https://example.com")))
	})
	b.Run("auth_key", func(b *testing.B) {
		s := benchServer(true)
		var err error
		if s.Auth, err = auth.New(auth.Config{APIKeys: []string{"bench-key"}}); err != nil {
			b.Fatal(err)
		}
		serveBench(b, s.guard(auth.Plugin, trivial), withInfo(benchRequest("X-API-Key", "bench-key")))
	})
	b.Run("auth_off", func(b *testing.B) {
		s := benchServer(true)
		s.Auth, _ = auth.New(auth.Config{})
		serveBench(b, s.guard(auth.Plugin, trivial), withInfo(benchRequest()))
	})
	b.Run("router", func(b *testing.B) {
		s := benchServer(true)
		s.Auth, _ = auth.New(auth.Config{})
		rs := s.routes()
		rs[0].serve = trivial // the plugin route, without the plugin handler
		rs[0].class = auth.Public
		serveBench(b, s.dispatch(rs), withInfo(benchRequest()))
	})
	b.Run("limits_off", func(b *testing.B) {
		s := benchServer(true)
		serveBench(b, http.HandlerFunc(s.plugin), withInfo(benchRequest()))
	})
	b.Run("limits_on", func(b *testing.B) {
		s := benchServer(true)
		s.Setup = func(string) PluginSetup {
			return PluginSetup{MaxConcurrency: 100, Methods: []string{http.MethodGet}, MaxBodyBytes: 1 << 20}
		}
		serveBench(b, http.HandlerFunc(s.plugin), withInfo(benchRequest()))
	})
}

// BenchmarkChain measures the whole chain in front of a standard-ABI
// handler: the default configuration (security headers, gzip, metrics,
// the access log) and the bare one, for a client that accepts gzip.
func BenchmarkChain(b *testing.B) {
	for _, c := range []struct {
		name string
		bare bool
	}{{"default", false}, {"bare", true}} {
		b.Run(c.name, func(b *testing.B) {
			serveBench(b, benchServer(c.bare).Handler(), benchRequest("Accept-Encoding", "gzip"))
		})
	}
}
