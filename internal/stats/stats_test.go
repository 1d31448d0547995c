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
