package isolate_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/isolate"
	"github.com/plugind/plugind/loader"
)

// BenchmarkHello calls the shipped hello plugin in-process and isolated
// over loopback HTTP from parallel clients, and reports each one's p99.
func BenchmarkHello(b *testing.B) {
	for _, mode := range []string{"inprocess", "isolated"} {
		b.Run(mode, func(b *testing.B) {
			c := config{}
			if mode == "isolated" {
				c.isolated = []string{"hello"}
			}
			h := newHarness(b, c, "hello")
			h.waitFor(b, "/_PLUGIN/hello/Hello", http.StatusOK, plugintest.BuildWait)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			var mu sync.Mutex
			var all []time.Duration
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var lat []time.Duration
				for pb.Next() {
					began := time.Now()
					resp, err := client.Get(h.url + "/_PLUGIN/hello/Hello?a=1")
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					lat = append(lat, time.Since(began))
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			})
			b.StopTimer()
			if len(all) > 0 {
				slices.Sort(all)
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

// BenchmarkExecToHealthy starts hello's (cached) program in a new
// process per iteration and reports the time from exec to its first
// answer on the socket.
func BenchmarkExecToHealthy(b *testing.B) {
	dir := plugintest.PluginPath(b, "hello")
	l, err := loader.New(loader.Options{SrcDir: dir + "/src", CacheDir: plugintest.CacheDir(), Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for b.Loop() {
		m, err := isolate.New(isolate.Options{Find: isolate.SourceFinder(l), ModuleDir: l.ModuleDir(), CacheDir: plugintest.CacheDir(),
			BuildWait: plugintest.BuildWait, Log: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Resolve(context.Background(), "hello", "Hello", "GET"); err != nil {
			b.Fatal(err)
		}
		total += m.Stat("hello").ExecToHealthy[0]
		b.StopTimer()
		if err := m.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "exec-to-healthy-µs")
}
