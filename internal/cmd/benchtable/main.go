// Command benchtable is the per-layer half of `make bench`: it runs the
// request path's Go benchmarks (handlers' BenchmarkLayer and
// BenchmarkChain, loader's BenchmarkLegacy) with -benchmem -json, and
// prints one table: each layer's ns/op and allocs/op alone around a
// trivial handler, what it adds to the trivial handler's own, and its
// share of CPU in a profile.
//
// The profile is of the in-process benchmark of the whole default chain
// (BenchmarkChain/default) and of the legacy adapter
// (BenchmarkLegacy/adapter), taken with -cpuprofile and read with
// `go tool pprof -traces`: each sample goes to the innermost frame that
// belongs to a layer (so a layer's share is its own work, its
// allocations included, not that of the layers inside it). The server
// exposes no pprof endpoint, so a profile under wrk is not taken.
//
//	go run ./internal/cmd/benchtable [-count 3] [-benchtime 20000x]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/plugind/plugind/internal/stats"
)

// row is one line of the table: a benchmark, the layer it measures, and
// the profile layer whose share it shows.
type row struct {
	layer   string
	bench   string // package-relative benchmark name
	base    string // the benchmark its cost is measured against
	profile string // key into the profile's shares; "" none
}

var rows = []row{
	{"trivial handler", "BenchmarkLayer/none", "", "handler"},
	{"access log (+ status recorder)", "BenchmarkLayer/access_log", "BenchmarkLayer/none", "access log"},
	{"request id (generated)", "BenchmarkLayer/request_id", "", "request id"},
	{"metrics", "BenchmarkLayer/metrics", "", "metrics"},
	{"security headers", "BenchmarkLayer/security_headers", "BenchmarkLayer/none", "security headers"},
	{"gzip wrapper, gzip accepted", "BenchmarkLayer/gzip_accepted", "BenchmarkLayer/none", "gzip"},
	{"gzip wrapper, not accepted", "BenchmarkLayer/gzip_not_accepted", "BenchmarkLayer/none", ""},
	{"CORS (a policy, an Origin)", "BenchmarkLayer/cors", "BenchmarkLayer/none", "cors"},
	{"CORS off", "BenchmarkLayer/cors_off", "BenchmarkLayer/none", ""},
	{"auth (an API key)", "BenchmarkLayer/auth_key", "BenchmarkLayer/none", "auth"},
	{"auth off", "BenchmarkLayer/auth_off", "BenchmarkLayer/none", ""},
	{"router (route + method lookup)", "BenchmarkLayer/router", "BenchmarkLayer/none", "router"},
	{"limits off (+ plugin dispatch, sdk env)", "BenchmarkLayer/limits_off", "BenchmarkLayer/none", "limits"},
	{"limits on (methods, body, concurrency)", "BenchmarkLayer/limits_on", "BenchmarkLayer/none", ""},
	{"legacy lock", "BenchmarkLegacy/lock", "", "legacy lock"},
	{"legacy globals (vars, query)", "BenchmarkLegacy/globals", "", "legacy globals"},
	{"JSON validity check", "BenchmarkLegacy/json_check", "", "json check"},
	{"legacy adapter, whole", "BenchmarkLegacy/adapter", "", ""},
	{"chain: default", "BenchmarkChain/default", "BenchmarkLayer/none", ""},
	{"chain: bare", "BenchmarkChain/bare", "BenchmarkLayer/none", ""},
}

// layers attribute profile frames: the first pattern a frame contains
// names its layer. Order matters only among patterns of one frame.
var layers = []struct{ layer, pattern string }{
	{"request id", ".requestID"},
	{"request id", "rs/xid."},
	{"metrics", "plugind/metrics."},
	{"metrics", "prometheus/"},
	{"access log", ".logRequest"},
	{"access log", "rs/zerolog."},
	{"access log", "handlers.ClientIP"},
	{"access log", "handlers.(*recorder"}, // recorderBase and the combination types
	{"access log", ".access.func"},
	{"security headers", ".securityHeaders.func"},
	{"gzip", "klauspost/compress/"},
	{"cors", "rs/cors."},
	{"cors", ".corsHandler.func"},
	{"auth", "plugind/auth."},
	{"auth", ".guard.func"},
	{"router", "gorilla/mux."},
	{"router", ".dispatch.func"},
	{"router", "handlers.matchPluginRoute"},
	{"limits", "handlers.(*pluginState)"},
	{"limits", "handlers.(*Server).plugin"},
	{"limits", "handlers.(*Server).existing"},
	{"limits", "plugind/sdk."},
	{"handler", "handlers.trivialServe"},
	{"handler", "handlers.(*trivialPlugin)"},
	{"legacy lock", "loader.(*artifact).lock"},
	{"legacy lock", "loader.(*artifact).tryLock"},
	{"legacy lock", "loader.(*artifact).unlock"},
	{"legacy lock", "loader.(*artifact).take"}, // a free copy, with [plugin.NAME] copies
	{"legacy lock", "loader.(*Handler).Call"},
	{"legacy globals", "loader.(*Handler).callLocked"},
	{"legacy globals", "loader.(*Handler).callIn"},
	{"legacy globals", "loader.(*Handler).vars"},
	{"legacy globals", "net/url."},
	{"json check", "encoding/json.Valid"},
	{"harness", "testing."},
	{"harness", "handlers.serveBench"},
}

type result struct{ ns, allocs float64 }

func main() {
	count := flag.Int("count", 3, "runs of each benchmark; the table shows medians")
	benchtime := flag.String("benchtime", "20000x", "go test -benchtime")
	flag.Parse()
	if err := run(*count, *benchtime); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(count int, benchtime string) error {
	res := map[string]result{}
	for _, p := range []struct{ pkg, bench string }{
		{"./handlers/", "^(BenchmarkLayer|BenchmarkChain)$"},
		{"./loader/", "^BenchmarkLegacy$"},
	} {
		r, err := bench(p.pkg, p.bench, count, benchtime)
		if err != nil {
			return err
		}
		for k, v := range r {
			res[k] = v
		}
	}
	tmp, err := os.MkdirTemp("", "benchtable")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	chainShare, err := profile(tmp, "./handlers/", "^BenchmarkChain$/^default$")
	if err != nil {
		return err
	}
	legacyShare, err := profile(tmp, "./loader/", "^BenchmarkLegacy$/^adapter$")
	if err != nil {
		return err
	}
	fmt.Printf("Request path, layer by layer (medians of %d runs; + is over the baseline row; CPU share from a profile of the default chain, or of the legacy adapter for legacy rows)\n", count)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layer\tns/op\t+ns/op\tallocs/op\t+allocs\tCPU share\t")
	for _, r := range rows {
		v, ok := res[r.bench]
		if !ok {
			return fmt.Errorf("no result for %s", r.bench)
		}
		plus, plusAllocs := "", ""
		if b, ok := res[r.base]; ok && r.base != "" {
			plus = strconv.FormatFloat(v.ns-b.ns, 'f', 0, 64)
			plusAllocs = strconv.FormatFloat(v.allocs-b.allocs, 'f', 0, 64)
		}
		share := ""
		if r.profile != "" {
			m := chainShare
			if strings.HasPrefix(r.profile, "legacy") || r.profile == "json check" {
				m = legacyShare
			}
			share = fmt.Sprintf("%.1f%%", m[r.profile])
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%.0f\t%s\t%s\t\n", r.layer, v.ns, plus, v.allocs, plusAllocs, share)
	}
	tw.Flush()
	fmt.Println("CPU of the default chain's profile by layer:", shares(chainShare))
	fmt.Println("CPU of the legacy adapter's profile by layer:", shares(legacyShare))
	return nil
}

func shares(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return int((m[b] - m[a]) * 1000) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+[\d.]+ B/op)?\s+([\d.]+) allocs/op`)

// bench runs pkg's benchmarks matching pattern and returns the median
// ns/op and allocs/op of each.
func bench(pkg, pattern string, count int, benchtime string) (map[string]result, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", pattern, "-benchmem", "-json",
		"-count", strconv.Itoa(count), "-benchtime", benchtime, pkg)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go test %s: %w", pkg, err)
	}
	var text strings.Builder
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var ev struct{ Action, Output string }
		if err := dec.Decode(&ev); err != nil {
			return nil, fmt.Errorf("go test -json %s: %w", pkg, err)
		}
		if ev.Action == "output" {
			text.WriteString(ev.Output)
		}
	}
	runs := map[string][]result{}
	sc := bufio.NewScanner(strings.NewReader(text.String()))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(m[2], 64)
		allocs, _ := strconv.ParseFloat(m[3], 64)
		runs[m[1]] = append(runs[m[1]], result{ns, allocs})
	}
	res := map[string]result{}
	for name, rs := range runs {
		ns, allocs := make([]float64, len(rs)), make([]float64, len(rs))
		for i, r := range rs {
			ns[i], allocs[i] = r.ns, r.allocs
		}
		res[name] = result{stats.Median(ns), stats.Median(allocs)}
	}
	return res, nil
}

// profile runs pkg's benchmark pattern under -cpuprofile and returns each
// layer's share of the samples, in percent.
func profile(tmp, pkg, pattern string) (map[string]float64, error) {
	base := filepath.Join(tmp, strings.Trim(filepath.Base(pkg), "./"))
	prof, bin := base+".cpu", base+".test"
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", pattern, "-benchtime", "2s",
		"-cpuprofile", prof, "-o", bin, pkg)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("profiling %s: %w", pkg, err)
	}
	out, err := exec.Command("go", "tool", "pprof", "-traces", bin, prof).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces: %w", err)
	}
	return attribute(string(out))
}

// attribute splits pprof -traces output into samples and gives each to
// the innermost frame's layer; samples in no layer's frames are the
// runtime's own (GC, scheduler), or "other".
func attribute(traces string) (map[string]float64, error) {
	by := map[string]time.Duration{}
	var total time.Duration
	for _, block := range strings.Split(traces, "-----------+")[1:] {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) < 2 {
			continue
		}
		// The first line is the rule's tail; then "  10ms   frame", frames.
		first := strings.Fields(lines[1])
		if len(first) < 2 {
			continue
		}
		d, err := time.ParseDuration(first[0])
		if err != nil {
			continue
		}
		frames := []string{first[1]}
		for _, l := range lines[2:] {
			if f := strings.Fields(l); len(f) > 0 {
				frames = append(frames, f[0])
			}
		}
		layer := "runtime (GC, scheduler)"
		if slices.ContainsFunc(frames, func(f string) bool { return !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "internal/") }) {
			layer = "other"
		}
	frames:
		for _, f := range frames {
			for _, l := range layers {
				if strings.Contains(f, l.pattern) {
					layer = l.layer
					break frames
				}
			}
		}
		by[layer] += d
		total += d
	}
	if total == 0 {
		return nil, fmt.Errorf("the profile has no samples")
	}
	shares := map[string]float64{}
	for k, v := range by {
		shares[k] = 100 * float64(v) / float64(total)
	}
	return shares, nil
}
