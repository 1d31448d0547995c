package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/server"
)

// BenchmarkRequestPath measures the whole in-process request path (router,
// request id, access log to io.Discard, loader lookup, call) against a
// plain handler writing the same bytes, the ceiling.
func BenchmarkRequestPath(b *testing.B) {
	cfg := config.Config{
		PluginPath: plugintest.PluginPath(b, "hello", "std"),
		Plugins:    config.Plugins{CacheDir: plugintest.CacheDir(), Go: "go", BuildTimeout: 5 * time.Minute},
		Tasks:      config.Tasks{Dir: b.TempDir(), Workers: 1, Retention: time.Hour},
	}
	s, err := server.New(context.Background(), cfg, zerolog.New(io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() }) // never served: release what New acquired
	h := s.Handler()
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	hello := get("/_PLUGIN/hello/Hello?abc=123")
	if hello.Code != 200 || get("/_PLUGIN/std/Header?id=1").Code != 200 {
		b.Fatalf("plugins not serving: %d %s", hello.Code, hello.Body)
	}
	body := hello.Body.Bytes()
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})

	for _, bc := range []struct {
		name    string
		handler http.Handler
		path    string
	}{
		{"plain", plain, "/_PLUGIN/hello/Hello?abc=123"},
		{"legacy", h, "/_PLUGIN/hello/Hello?abc=123"},
		{"standard", h, "/_PLUGIN/std/Header?id=1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					bc.handler.ServeHTTP(rec, httptest.NewRequest("GET", bc.path, nil))
					if rec.Code != 200 {
						b.Errorf("status %d", rec.Code)
						return
					}
				}
			})
		})
	}
}
