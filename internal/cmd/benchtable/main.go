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
// `go tool pprof -traces` by internal/layerprof: each sample goes to the
// innermost frame that belongs to a layer (so a layer's share is its own
// work, its allocations included, not that of the layers inside it).
// loadrun profiles the server itself under wrk, with the same layers.
//
//	go run ./internal/cmd/benchtable [-count 3] [-benchtime 20000x]
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/plugind/plugind/internal/layerprof"
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
	var parts []string
	for _, k := range layerprof.Sorted(m) {
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
	traces, err := layerprof.Traces(context.Background(), bin, prof)
	if err != nil {
		return nil, err
	}
	return layerprof.Attribute(traces, layerprof.Chain())
}
