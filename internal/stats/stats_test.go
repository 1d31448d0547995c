package stats

import (
	"errors"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"one", []float64{7}, 7},
		{"odd, unsorted", []float64{9, 1, 5}, 5},
		{"even: the mean of the middle two", []float64{4, 1, 3, 10}, 3.5},
		{"two", []float64{2, 4}, 3},
		{"ties", []float64{2, 2, 2, 9}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			if got := Median(in); got != tt.want {
				t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("Median reordered its input: %v", in)
			}
		})
	}
	if got := Median([]time.Duration{3 * time.Millisecond, time.Millisecond}); got != 2*time.Millisecond {
		t.Errorf("Median of durations = %s, want 2ms", got)
	}
}

func TestParseRSS(t *testing.T) {
	tests := []struct {
		name, status string
		want         int64
		err          string
	}{
		{"kB", "Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t    1234 kB\nThreads: 3\n", 1234 << 10, ""},
		{"last line", "VmRSS: 2 kB", 2 << 10, ""},
		{"no VmRSS", "Name:\tx\n", 0, "no VmRSS"},
		{"another unit", "VmRSS:\t1 MB\n", 0, "unexpected line"},
		{"not a number", "VmRSS:\tx kB\n", 0, "invalid syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRSS(tt.status, 42)
			if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseRSS = %d, %v; want %d, %q", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestRSS(t *testing.T) {
	got, err := RSS(os.Getpid())
	if runtime.GOOS != "linux" {
		if !errors.Is(err, ErrNoProc) {
			t.Fatalf("RSS off Linux: %d, %v; want ErrNoProc", got, err)
		}
		return
	}
	if err != nil || got < 1<<20 {
		t.Fatalf("RSS of this test = %d, %v; want at least a MiB", got, err)
	}
}

func TestParseCPUTime(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 250 and 50 ticks.
	const rest = " S 1 2 3 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 5 6 7"
	tests := []struct {
		name, stat string
		want       time.Duration
		err        string
	}{
		{"plain name", "42 (plugind)" + rest, 3 * time.Second, ""},
		{"name with spaces and parentheses", "42 (a (b) c)" + rest, 3 * time.Second, ""},
		{"no name", "42 plugind S 1", 0, "no command name"},
		{"cut short", "42 (plugind) S 1 2 3", 0, "fields"},
		{"not a number", "42 (plugind) S 1 2 3 0 -1 4194560 100 0 0 0 x 50", 0, "invalid syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPUTime(tt.stat, 42)
			if got != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseCPUTime = %v, %v; want %v, %q", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestCPUTimeOffLinux: elsewhere CPUTime says it cannot; on Linux,
// TestCPUTime (cputime_linux_test.go) reads it.
func TestCPUTimeOffLinux(t *testing.T) {
	if runtime.GOOS == "linux" {
		return
	}
	if got, err := CPUTime(os.Getpid()); !errors.Is(err, ErrNoProc) {
		t.Fatalf("CPUTime off Linux: %v, %v; want ErrNoProc", got, err)
	}
}
