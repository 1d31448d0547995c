package loader

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The legacy call path's layers, each alone, for `make bench`'s table
// (internal/cmd/benchtable): the lock, the globals filled for a call, the
// JSON validity check of the body, and the whole adapter around a
// handler that answers hello's body.

// helloBody is what lib/src/hello.go answers to ?abc=123.
const helloBody = `{"http_vars":{"file":"hello","func":"Hello"},"url_query":{"abc":["123"]},"msg":"Hello plugin caller!"}`

// benchLegacy is a prestd-ABI handler as handler() makes one, over an
// artifact with both globals, without a .so: the function is Go code of
// the test binary.
func benchLegacy() *Handler {
	var vars map[string]string
	var query map[string][]string
	a := &artifact{sem: make(chan struct{}, 1), httpVars: &vars, urlQuery: &query}
	return &Handler{Plugin: "hello", Fn: "Hello", Symbol: "GETHelloHandler", ABI: ABILegacy, art: a, wait: time.Second,
		legacy: func() (string, int) { return helloBody, http.StatusOK }}
}

type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(int)             {}
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkLegacy(b *testing.B) {
	b.Run("lock", func(b *testing.B) {
		a := benchLegacy().art
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if !a.lock(ctx, time.Second) {
				b.Fatal("lock not taken")
			}
			a.unlock()
		}
	})
	b.Run("globals", func(b *testing.B) {
		h := benchLegacy()
		r := httptest.NewRequest(http.MethodGet, "/_PLUGIN/hello/Hello?abc=123", nil)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := h.callLocked(h.vars(), r.URL.Query()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json_check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !json.Valid([]byte(helloBody)) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("adapter", func(b *testing.B) {
		h := benchLegacy()
		r := httptest.NewRequest(http.MethodGet, "/_PLUGIN/hello/Hello?abc=123", nil)
		w := &benchWriter{h: make(http.Header)}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			if err := h.ServeHTTP(w, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
