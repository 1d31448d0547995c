// Package reqstats keeps recent request statistics per plugin: counts,
// server errors and latency quantiles over the last minutes, in a ring of
// fixed time buckets with a fixed-size latency histogram in each. It is
// what the admin page charts; Prometheus keeps the long history.
//
// Recording is allocation-free once a plugin has been seen: a map lookup,
// a mutex and a few integer operations.
package reqstats

import (
	"math/bits"
	"sync"
	"time"
)

const (
	// Bucket is the time each bucket covers.
	Bucket = 10 * time.Second
	// Buckets is how many the ring holds: Buckets*Bucket is the window
	// (15 minutes).
	Buckets = 90
	// MaxPlugins bounds the plugins recorded; requests for further names
	// are not recorded (names come from the source directory, so this is
	// only reached by a directory of thousands of plugins).
	MaxPlugins = 4096
)

// Latency histogram: values below 2^minExp ns (about 1 µs) share the first
// bin; above it each power of two is split into subBins bins (at most 19%
// apart); 2^maxExp ns (about 137 s) and more share the last.
const (
	minExp   = 10
	maxExp   = 37
	subBits  = 2
	subBins  = 1 << subBits
	histBins = (maxExp-minExp)*subBins + 2
)

// bin is the histogram bin of d.
func bin(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 1<<minExp {
		return 0
	}
	exp := bits.Len64(v) - 1
	if exp >= maxExp {
		return histBins - 1
	}
	sub := int(v>>(exp-subBits)) & (subBins - 1)
	return (exp-minExp)*subBins + sub + 1
}

// binUpper is the upper bound of bin i: a quantile read from the
// histogram is at most this, and more than the bound of bin i-1. The last
// bin is open; its value is its lower bound, 2^maxExp ns.
func binUpper(i int) time.Duration {
	switch {
	case i == 0:
		return 1 << minExp
	case i >= histBins-1:
		return 1 << maxExp
	}
	exp := (i-1)/subBins + minExp
	sub := (i - 1) % subBins
	return time.Duration(uint64(subBins+sub+1) << (exp - subBits))
}

// bucket is one Bucket of one plugin's requests.
type bucket struct {
	epoch  int64 // time.Unix()/Bucket of the period it holds; 0: unused
	count  uint32
	errors uint32
	hist   [histBins]uint32
}

// series is one plugin's ring.
type series struct {
	mu   sync.Mutex
	ring [Buckets]bucket
}

// Recorder records requests per plugin. The zero value is not usable;
// call New. It is safe for concurrent use.
type Recorder struct {
	now func() time.Time

	mu      sync.RWMutex // guards plugins
	plugins map[string]*series
}

// New returns a Recorder that reads the time from now (time.Now if nil).
func New(now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{now: now, plugins: make(map[string]*series)}
}

// IsError reports whether a request answered status counts as an error:
// a server error (5xx). Client errors are the client's.
func IsError(status int) bool { return status >= 500 }

// Record counts one request to plugin answered status after d, now. It
// does not allocate once plugin has been recorded before.
func (r *Recorder) Record(plugin string, status int, d time.Duration) {
	r.RecordAt(plugin, status, d, r.now())
}

// RecordAt is Record for a request that ended at end, for a caller that
// has read the clock already: on some virtual machines reading it is most
// of Record's cost.
func (r *Recorder) RecordAt(plugin string, status int, d time.Duration, end time.Time) {
	r.mu.RLock()
	s := r.plugins[plugin]
	r.mu.RUnlock()
	if s == nil {
		if s = r.add(plugin); s == nil {
			return
		}
	}
	epoch := end.UnixNano() / int64(Bucket)
	s.mu.Lock()
	b := &s.ring[epoch%Buckets]
	if b.epoch != epoch {
		*b = bucket{epoch: epoch}
	}
	b.count++
	if IsError(status) {
		b.errors++
	}
	b.hist[bin(d)]++
	s.mu.Unlock()
}

// add makes plugin's series, unless MaxPlugins are recorded.
func (r *Recorder) add(plugin string) *series {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.plugins[plugin]; ok {
		return s
	}
	if len(r.plugins) >= MaxPlugins {
		return nil
	}
	s := &series{}
	r.plugins[plugin] = s
	return s
}

// Point is one bucket of a plugin's requests.
type Point struct {
	Start    time.Time
	Requests int
	Errors   int
	// P50 and P99 are latency quantiles, each the upper bound of the
	// histogram bin it falls in (within 19% above the true value); 0 with
	// no requests.
	P50, P99 time.Duration
}

// Window is a plugin's requests over the last Buckets*Bucket, oldest
// point first, with the totals over the whole window.
type Window struct {
	Points   []Point // Buckets of them, the last one the current bucket
	Requests int
	Errors   int
	P50, P99 time.Duration
}

// Rate is requests per second over the window.
func (w Window) Rate() float64 { return float64(w.Requests) / (Buckets * Bucket).Seconds() }

// ErrorRatio is the share of requests that were errors, 0 with none.
func (w Window) ErrorRatio() float64 {
	if w.Requests == 0 {
		return 0
	}
	return float64(w.Errors) / float64(w.Requests)
}

// Window returns plugin's recent requests; a plugin never recorded has a
// window of empty points.
func (r *Recorder) Window(plugin string) Window {
	now := r.now().UnixNano() / int64(Bucket)
	w := Window{Points: make([]Point, Buckets)}
	for i := range w.Points {
		w.Points[i].Start = time.Unix(0, (now-Buckets+1+int64(i))*int64(Bucket))
	}
	r.mu.RLock()
	s := r.plugins[plugin]
	r.mu.RUnlock()
	if s == nil {
		return w
	}
	var total [histBins]uint32
	s.mu.Lock()
	for i := range w.Points {
		epoch := now - Buckets + 1 + int64(i)
		b := &s.ring[epoch%Buckets]
		if b.epoch != epoch || b.count == 0 {
			continue
		}
		p := &w.Points[i]
		p.Requests, p.Errors = int(b.count), int(b.errors)
		p.P50, p.P99 = quantile(&b.hist, b.count, 0.50), quantile(&b.hist, b.count, 0.99)
		w.Requests += p.Requests
		w.Errors += p.Errors
		for j, n := range b.hist {
			total[j] += n
		}
	}
	s.mu.Unlock()
	w.P50, w.P99 = quantile(&total, uint32(w.Requests), 0.50), quantile(&total, uint32(w.Requests), 0.99)
	return w
}

// quantile is the q-quantile of the n values in h: the upper bound of
// the bin holding the value of rank ceil(q*n).
func quantile(h *[histBins]uint32, n uint32, q float64) time.Duration {
	if n == 0 {
		return 0
	}
	rank := uint64(q * float64(n))
	if float64(rank) < q*float64(n) {
		rank++
	}
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h {
		seen += uint64(c)
		if seen >= rank {
			return binUpper(i)
		}
	}
	return binUpper(histBins - 1)
}
