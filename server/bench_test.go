package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// BenchmarkLegacyCopies measures prestd's hello through the server's
// handler chain with [plugin.NAME] copies = 1, 2 and 4 against the
// standard ABI doing hello's work (testdata/plugins/hellostd.go), from
// legacyCallers goroutines at once: with one copy the legacy calls take
// turns on the plugin's globals; with N, N run at once. The plugins are
// hello under three names (a name is a package path of its own), so each
// has its own copies.
//
// Each sub-benchmark alternates the two in rounds of b.N calls each and
// reports legacy/standard, the legacy ABI's throughput as a share of the
// standard ABI's: the median of the rounds' own ratios, so that a machine
// whose load changes moves both alike. ns/op is the legacy call's.
func BenchmarkLegacyCopies(b *testing.B) {
	dir := plugintest.PluginPath(b, "hello", "hellostd")
	src, err := os.ReadFile(filepath.Join(dir, "src", "hello.go"))
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"hello2", "hello4"} {
		plugintest.WriteFile(b, filepath.Join(dir, "src"), name+".go", string(src))
	}
	cfg := config.Config{
		PluginPath: dir,
		Plugins:    config.Plugins{CacheDir: plugintest.CacheDir(), Go: "go", BuildTimeout: 5 * time.Minute},
		Tasks:      config.Tasks{Dir: b.TempDir(), Workers: 1, Retention: time.Hour},
		PluginConfigs: map[string]config.PluginConfig{
			"hello2": {Copies: 2},
			"hello4": {Copies: 4},
		},
	}
	s, err := server.New(context.Background(), cfg, zerolog.New(io.Discard))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	h := s.Handler()
	const standard = "/_PLUGIN/hellostd/Hello?abc=123"
	for _, bc := range []struct{ name, path string }{
		{"copies=1", "/_PLUGIN/hello/Hello?abc=123"},
		{"copies=2", "/_PLUGIN/hello2/Hello?abc=123"},
		{"copies=4", "/_PLUGIN/hello4/Hello?abc=123"},
	} {
		for _, path := range []string{bc.path, standard} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if rec.Code != 200 || !strings.Contains(rec.Body.String(), "Hello plugin caller!") {
				b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
			}
		}
		b.Run(bc.name, func(b *testing.B) {
			var legacy time.Duration
			var ratios []float64
			for round := range legacyRounds {
				// Each leads in turn.
				first, second := bc.path, standard
				if round%2 == 1 {
					first, second = second, first
				}
				d := map[string]time.Duration{first: callAll(b, h, first, b.N)}
				d[second] = callAll(b, h, second, b.N)
				legacy += d[bc.path]
				ratios = append(ratios, float64(d[standard])/float64(d[bc.path]))
			}
			slices.Sort(ratios)
			b.ReportMetric(ratios[len(ratios)/2], "legacy/standard")
			b.ReportMetric(float64(legacy.Nanoseconds())/float64(legacyRounds*b.N), "ns/op")
		})
	}
}

// legacyRounds and legacyCallers shape BenchmarkLegacyCopies: rounds of
// each ABI, and the goroutines calling at once (more than the cores, as
// under load).
const (
	legacyRounds  = 5
	legacyCallers = 16
)

// callAll serves n GETs of path through h from legacyCallers goroutines
// and returns how long they took.
func callAll(b *testing.B, h http.Handler, path string, n int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range legacyCallers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				if rec.Code != 200 {
					b.Errorf("%s: status %d", path, rec.Code)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}
