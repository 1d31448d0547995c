package stats

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestCPUTime(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the reading has moved by 200 ms, and compare the move
	// with getrusage's over the same span: ticks are 10 ms.
	ruBefore := rusage(t)
	deadline := time.Now().Add(20 * time.Second)
	after := before
	for after-before < 200*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("20 s of spinning moved CPUTime by %v only", after-before)
		}
		for x := 0; x < 1e6; x++ {
			_ = x * x
		}
		if after, err = CPUTime(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	ru := rusage(t) - ruBefore
	if d := after - before; d < ru-60*time.Millisecond || d > ru+60*time.Millisecond {
		t.Errorf("CPUTime moved by %v, getrusage by %v", d, ru)
	}
}

// rusage is this process's CPU time, user and system, by getrusage(2).
func rusage(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
