// Package stats holds the small readings the benchmark programs and
// test harnesses share: the median of a set of samples, and the resident
// memory and CPU time of a process.
//
// It uses the standard library only and builds wherever the programs do.
package stats

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Number is what Median takes: durations, counts, rates.
type Number interface {
	~int | ~int64 | ~float64
}

// Median of v, which must not be empty: the middle sample, or for an even
// count the mean of the middle two (the usual definition, and benchstat's:
// picking either of the two instead would lean the figure towards the
// slower or the faster runs). v is not reordered.
func Median[T Number](v []T) T {
	if len(v) == 0 {
		panic("stats.Median of no samples")
	}
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ErrNoProc is RSS's and CPUTime's error where there is no /proc to
// read (not Linux).
var ErrNoProc = fmt.Errorf("a process's memory and CPU time are read from /proc (Linux only): %w", errors.ErrUnsupported)

// readProc reads /proc/PID/name, what being what it is read for.
func readProc(pid int, name, what string) (string, error) {
	if runtime.GOOS != "linux" {
		return "", ErrNoProc
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		return "", fmt.Errorf("%s of process %d: %w", what, pid, err)
	}
	return string(data), nil
}

// RSS is the resident memory of process pid, in bytes: VmRSS of
// /proc/PID/status.
func RSS(pid int) (int64, error) {
	status, err := readProc(pid, "status", "memory")
	if err != nil {
		return 0, err
	}
	return parseRSS(status, pid)
}

func parseRSS(status string, pid int) (int64, error) {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("memory of process %d: unexpected line %q", pid, line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("memory of process %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("memory of process %d: no VmRSS in /proc/%d/status", pid, pid)
}

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture Go supports (the kernel's ABI, whatever its HZ).
const userHZ = 100

// CPUTime is the CPU time process pid has used, user and system, of
// all its threads: utime and stime of /proc/PID/stat, to a hundredth of
// a second.
func CPUTime(pid int) (time.Duration, error) {
	stat, err := readProc(pid, "stat", "CPU time")
	if err != nil {
		return 0, err
	}
	return parseCPUTime(stat, pid)
}

func parseCPUTime(stat string, pid int) (time.Duration, error) {
	// The command name, field 2, is in parentheses and may hold spaces
	// and parentheses itself: the fields after it follow the last ')'.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("CPU time of process %d: no command name in %q", pid, stat)
	}
	f := strings.Fields(stat[i+1:]) // from field 3, state
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("CPU time of process %d: %d fields in /proc/%d/stat", pid, len(f)+2, pid)
	}
	var ticks int64
	for _, s := range []string{f[utime], f[stime]} {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("CPU time of process %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
