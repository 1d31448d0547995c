package reqstats

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time for tests.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) {
	c.ns.Add(int64(d))
}

// start is a bucket boundary, so that tests know which bucket a time is in.
var start = time.Unix(1_800_000_000, 0)

func TestBinBounds(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 999, 1023, 1024, 1279, 1280, 1500, time.Millisecond, 3 * time.Millisecond, time.Second, 100 * time.Second, 1 << 37, time.Hour, -5} {
		i := bin(d)
		if i < 0 || i >= histBins {
			t.Fatalf("bin(%v) = %d, out of range", d, i)
		}
		if d >= 0 && d < 1<<maxExp && d >= binUpper(i) {
			t.Errorf("bin(%v) = %d, whose upper bound %v is not above it", d, i, binUpper(i))
		}
		if i > 0 && i < histBins-1 && d < binUpper(i-1) {
			t.Errorf("bin(%v) = %d, but it is below the previous bin's bound %v", d, i, binUpper(i-1))
		}
	}
	for i := 1; i < histBins-1; i++ { // the last bin is open: its "bound" is its lower one
		if binUpper(i) <= binUpper(i-1) {
			t.Fatalf("bounds not increasing at %d: %v <= %v", i, binUpper(i), binUpper(i-1))
		}
		if float64(binUpper(i))/float64(binUpper(i-1)) > 1.26 {
			t.Fatalf("bins %d and %d more than 26%% apart: %v, %v", i-1, i, binUpper(i-1), binUpper(i))
		}
	}
}

func TestQuantilesAndRates(t *testing.T) {
	type req struct {
		status int
		d      time.Duration
		n      int
	}
	tests := []struct {
		name             string
		reqs             []req
		requests, errors int
		p50, p99         time.Duration // true values; the estimate is within 19% above
		errRatio         float64
	}{
		{name: "none"},
		{name: "one", reqs: []req{{200, 2 * time.Millisecond, 1}}, requests: 1, p50: 2 * time.Millisecond, p99: 2 * time.Millisecond},
		{
			name:     "a slow tail",
			reqs:     []req{{200, time.Millisecond, 98}, {200, 400 * time.Millisecond, 2}},
			requests: 100, p50: time.Millisecond, p99: 400 * time.Millisecond,
		},
		{
			name:     "the 99th of 100 is fast",
			reqs:     []req{{200, time.Millisecond, 99}, {200, 5 * time.Second, 1}},
			requests: 100, p50: time.Millisecond, p99: time.Millisecond,
		},
		{
			name:     "errors are 5xx only",
			reqs:     []req{{200, 10 * time.Microsecond, 6}, {404, 10 * time.Microsecond, 2}, {500, 10 * time.Microsecond, 1}, {503, 10 * time.Microsecond, 1}},
			requests: 10, errors: 2, errRatio: 0.2, p50: 10 * time.Microsecond, p99: 10 * time.Microsecond,
		},
		{
			name:     "below a microsecond",
			reqs:     []req{{200, 300 * time.Nanosecond, 4}},
			requests: 4, p50: 300 * time.Nanosecond, p99: 300 * time.Nanosecond,
		},
		{
			name:     "beyond the histogram",
			reqs:     []req{{200, 10 * time.Minute, 1}},
			requests: 1, p50: 1 << maxExp, p99: 1 << maxExp,
		},
	}
	within := func(got, want time.Duration) bool {
		if want == 0 {
			return got == 0
		}
		if want < 1<<minExp {
			return got == 1<<minExp
		}
		return got >= want && float64(got) <= float64(want)*1.19+1
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock(start)
			r := New(c.now)
			for _, q := range tt.reqs {
				for range q.n {
					r.Record("p", q.status, q.d)
				}
			}
			w := r.Window("p")
			if w.Requests != tt.requests || w.Errors != tt.errors {
				t.Fatalf("requests, errors = %d, %d; want %d, %d", w.Requests, w.Errors, tt.requests, tt.errors)
			}
			if !within(w.P50, tt.p50) || !within(w.P99, tt.p99) {
				t.Errorf("p50, p99 = %v, %v; want %v, %v (within 19%% above)", w.P50, w.P99, tt.p50, tt.p99)
			}
			if w.ErrorRatio() != tt.errRatio {
				t.Errorf("error ratio %v, want %v", w.ErrorRatio(), tt.errRatio)
			}
			if want := float64(tt.requests) / 900; w.Rate() != want {
				t.Errorf("rate %v/s, want %v/s", w.Rate(), want)
			}
			last := w.Points[len(w.Points)-1]
			if last.Requests != tt.requests || last.P99 != w.P99 {
				t.Errorf("current point %+v; want the window's %d requests, p99 %v", last, tt.requests, w.P99)
			}
		})
	}
}

func TestWindowMovesAndForgets(t *testing.T) {
	c := newClock(start)
	r := New(c.now)
	r.Record("p", 200, time.Millisecond) // bucket 0
	c.add(Bucket)
	r.Record("p", 500, time.Millisecond) // bucket 1
	r.Record("p", 500, time.Millisecond)

	w := r.Window("p")
	if got := []int{w.Points[Buckets-2].Requests, w.Points[Buckets-1].Requests}; got[0] != 1 || got[1] != 2 {
		t.Fatalf("last two points hold %v requests, want [1 2]", got)
	}
	if w.Points[Buckets-1].Errors != 2 || !w.Points[Buckets-1].Start.Equal(start.Add(Bucket)) {
		t.Fatalf("current point %+v; want 2 errors, starting at %v", w.Points[Buckets-1], start.Add(Bucket))
	}

	// Just inside the window, the first request is the oldest point.
	c.add((Buckets - 2) * Bucket)
	if w := r.Window("p"); w.Requests != 3 || w.Points[0].Requests != 1 {
		t.Fatalf("at the edge of the window: %d requests, oldest point %d; want 3, 1", w.Requests, w.Points[0].Requests)
	}
	// One bucket on, it is gone, and a request in the ring slot it used
	// does not add to it.
	c.add(Bucket)
	r.Record("p", 200, time.Millisecond)
	w = r.Window("p")
	if w.Requests != 3 || w.Errors != 2 || w.Points[Buckets-1].Requests != 1 {
		t.Fatalf("after the window moved: %d requests, %d errors, current %d; want 3, 2, 1", w.Requests, w.Errors, w.Points[Buckets-1].Requests)
	}
	// Long after, nothing.
	c.add(time.Hour)
	if w := r.Window("p"); w.Requests != 0 {
		t.Fatalf("an hour later: %d requests, want 0", w.Requests)
	}
	if w := r.Window("never"); w.Requests != 0 || len(w.Points) != Buckets {
		t.Fatalf("unknown plugin: %d requests, %d points", w.Requests, len(w.Points))
	}
}

func TestMaxPlugins(t *testing.T) {
	r := New(nil)
	for i := range MaxPlugins + 10 {
		r.Record(fmt.Sprint("p", i), 200, time.Millisecond)
	}
	if n := len(r.plugins); n != MaxPlugins {
		t.Fatalf("%d plugins recorded, want the bound %d", n, MaxPlugins)
	}
	r.Record("p0", 200, time.Millisecond) // known plugins go on being recorded
	if w := r.Window("p0"); w.Requests != 2 {
		t.Fatalf("p0: %d requests, want 2", w.Requests)
	}
}

func TestConcurrentRecord(t *testing.T) {
	r := New(nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				r.Record(fmt.Sprint("p", g%2), 200+i%2*300, time.Duration(i)*time.Microsecond)
				if i%100 == 0 {
					_ = r.Window("p0")
				}
			}
		})
	}
	wg.Wait()
	// The test may straddle a bucket boundary: count the whole window.
	if a, b := r.Window("p0"), r.Window("p1"); a.Requests+b.Requests != 8000 || a.Errors+b.Errors != 4000 {
		t.Fatalf("recorded %d requests, %d errors; want 8000, 4000", a.Requests+b.Requests, a.Errors+b.Errors)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	r := New(nil)
	r.Record("hello", 200, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() { r.Record("hello", 500, 3*time.Millisecond) }); n != 0 {
		t.Fatalf("Record allocates %v times per call, want 0", n)
	}
	end := time.Now()
	if n := testing.AllocsPerRun(1000, func() { r.RecordAt("hello", 200, time.Millisecond, end) }); n != 0 {
		t.Fatalf("RecordAt allocates %v times per call, want 0", n)
	}
}

func BenchmarkRecord(b *testing.B) {
	r := New(nil)
	r.Record("hello", 200, time.Millisecond)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d += 1000
			r.Record("hello", 200, d%time.Second)
		}
	})
}

// BenchmarkRecordAt is the cost without reading the clock.
func BenchmarkRecordAt(b *testing.B) {
	r := New(nil)
	end := time.Now()
	r.RecordAt("hello", 200, time.Millisecond, end)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d += 1000
			r.RecordAt("hello", 200, d%time.Second, end)
		}
	})
}
