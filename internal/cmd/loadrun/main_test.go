package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func TestIsolatedPath(t *testing.T) {
	tests := []struct{ src, path, want string }{
		{"lib/src/hello.go", "/_PLUGIN/hello/Hello?abc=123", "/_PLUGIN/hello-isolated/Hello?abc=123"},
		{"hello.go", "/_PLUGIN/hello/Hello", "/_PLUGIN/hello-isolated/Hello"},
		{"lib/src/hello.go", "/_PLUGIN/other/Hello", ""},
		{"lib/src/hello.go", "/_PLUGIN/hellothere/Hello", ""},
	}
	for _, tt := range tests {
		if got := (options{src: tt.src, path: tt.path}).isolatedPath(); got != tt.want {
			t.Errorf("src %s, path %s: %q, want %q", tt.src, tt.path, got, tt.want)
		}
	}
}

// TestPairedRatio: a paired ratio is the median of each round's own, so a
// round where the machine was slow for both does not skew it, where the
// ratio of medians would pair runs of different rounds.
func TestPairedRatio(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	results := []result{
		{target: "a", round: 1, rps: 10000, p99: ms(10)}, {target: "b", round: 1, rps: 3000, p99: ms(15)},
		{target: "b", round: 2, rps: 3500, p99: ms(40)}, {target: "a", round: 2, rps: 7000, p99: ms(20)},
		{target: "a", round: 3, rps: 5000, p99: ms(100)}, {target: "b", round: 3, rps: 1500, p99: ms(300)},
	}
	tests := []struct {
		q      ratio
		want   float64
		rounds int
	}{
		{ratio{num: "b", den: "a"}, 3000.0 / 7000, 0},              // ratio of medians
		{ratio{num: "b", den: "a", paired: true}, 0.3, 3},          // 0.3, 0.5, 0.3
		{ratio{num: "b", den: "a", paired: true, p99: true}, 2, 3}, // 1.5, 2, 3
		{ratio{num: "b", den: "a", p99: true}, 40.0 / 20, 0},       // medians 40 ms / 20 ms
		{ratio{num: "b", den: "missing", paired: true}, 0, -1},     // no round has both
	}
	for _, tt := range tests {
		v, rounds := tt.q.value(results)
		if tt.rounds == -1 {
			if !math.IsNaN(v) || len(rounds) != 0 {
				t.Errorf("%+v: %v %v, want NaN and no rounds", tt.q, v, rounds)
			}
			continue
		}
		if diff := v - tt.want; diff > 1e-9 || diff < -1e-9 || len(rounds) != tt.rounds {
			t.Errorf("%+v: %v %v, want %v with %d rounds", tt.q, v, rounds, tt.want, tt.rounds)
		}
	}

	var out bytes.Buffer
	err := report(&out, map[string]float64{}, []target{{name: "a"}, {name: "b"}}, results, []ratio{
		{label: "b / a", num: "b", den: "a", digits: 2, target: 0.45, paired: true},
		{label: "b p99 / a p99", num: "b", den: "a", digits: 2, target: 2, paired: true, p99: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"b / a = 0.30x (medians 3000 / 7000 req/s, median of rounds' 0.30, 0.50, 0.30) (target >= 0.45x): below target",
		"b p99 / a p99 = 2.00x (medians 40ms / 20ms, median of rounds' 1.50, 2.00, 3.00) (target <= 2x)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// wrkOut is wrk --latency's output for one run.
const wrkOut = `Running 10s test @ http://127.0.0.1:3000/_PLUGIN/hello/Hello?abc=123
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.47ms  30.92ms   87.08%
    Req/Sec    12.33k     1.02k   14.97k    70.50%
  Latency Distribution
     50%    1.78ms
     75%    2.52ms
     90%    3.54ms
     99%    7.96ms
  245431 requests in 10.00s, 109.55MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  24541.12
Transfer/sec:     10.95MB
`

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name     string
		out      string
		want     result
		requests int64
		err      string
	}{
		{"a run", wrkOut, result{rps: 24541.12, p50: 1780 * time.Microsecond, p99: 7960 * time.Microsecond, errs: "Non-2xx or 3xx responses: 3"}, 245431, ""},
		{"no latency", strings.Replace(wrkOut, "Latency Distribution", "", 1), result{}, 245431, "no Latency Distribution"},
		{"no rate", strings.Replace(wrkOut, "Requests/sec", "R", 1), result{}, 245431, "no Requests/sec"},
		{"no count", strings.Replace(wrkOut, "245431 requests in", "requests in", 1), result{rps: 24541.12, p50: 1780 * time.Microsecond, p99: 7960 * time.Microsecond, errs: "Non-2xx or 3xx responses: 3"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("parseWrk error %v, want %q", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Errorf("parseWrk = %+v, want %+v", got, tt.want)
			}
			if n := requestsOf(tt.out); n != tt.requests {
				t.Errorf("requestsOf = %d, want %d", n, tt.requests)
			}
		})
	}
}

func TestMedianCPU(t *testing.T) {
	results := []result{
		{target: "plugin", cpu: 40 * time.Microsecond},
		{target: "plugin", cpu: 0}, // not read: left out
		{target: "plugin", cpu: 44 * time.Microsecond},
		{target: "plain", cpu: 10 * time.Microsecond},
	}
	if got := medianCPU(results, "plugin"); got != 42*time.Microsecond {
		t.Errorf("medianCPU(plugin) = %v, want 42µs", got)
	}
	if got := medianCPU(results, "bare"); got != 0 {
		t.Errorf("medianCPU of a target without readings = %v, want 0", got)
	}
}
