package isolate_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/internal/stats"
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
	p, err := build.New(b.Context(), build.Options{SrcDir: dir + "/src", CacheDir: plugintest.CacheDir(), Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	l, err := loader.New(loader.Options{Pipeline: p, Log: zerolog.Nop()})
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

// BenchmarkReloadMemory reloads an isolated plugin with a new source per
// iteration and reports the memory the server and its children hold
// afterwards against before: an old version's memory leaves with its
// process.
func BenchmarkReloadMemory(b *testing.B) {
	h := newHarness(b, config{isolated: []string{"slow"}}, "slow")
	h.waitFor(b, "/_PLUGIN/slow/Legacy", http.StatusOK, plugintest.BuildWait)
	src, err := os.ReadFile(filepath.Join(h.src, "slow.go"))
	if err != nil {
		b.Fatal(err)
	}
	rss := func() (server, children int64) {
		debug.FreeOSMemory() // what is garbage is not kept
		server = rssOf(b, os.Getpid())
		for _, pid := range h.m.Stat("slow").PIDs {
			children += rssOf(b, pid)
		}
		return server, children
	}
	s0, c0 := rss()
	i := 0
	for b.Loop() {
		i++
		plugintest.WriteFile(b, h.src, "slow.go", fmt.Sprintf("%s\n// version %d %d\n", src, i, time.Now().UnixNano()))
		if err := h.m.Reload(context.Background(), "slow"); err != nil {
			b.Fatal(err)
		}
		if a := h.get(b, "/_PLUGIN/slow/Legacy"); a.status != http.StatusOK {
			b.Fatalf("%d %s", a.status, a.body)
		}
	}
	s1, c1 := rss()
	b.ReportMetric(float64(s1+c1-s0-c0)/1024/float64(b.N), "KB-kept/reload")
	b.ReportMetric(float64(s0+c0)/1024, "KB-before")
	b.ReportMetric(float64(s1+c1)/1024, "KB-after")
	if n := len(h.m.Stat("slow").PIDs); n != 1 {
		b.Fatalf("%d processes after the reloads; want 1", n)
	}
}

// rssOf is the resident memory of process pid.
func rssOf(b testing.TB, pid int) int64 {
	b.Helper()
	n, err := stats.RSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
