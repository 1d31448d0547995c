package build

import (
	"context"
	"testing"
	"time"
)

// TestBuildWaits: a build that queues behind another says whose, its
// wait is measured apart from its own time, and the estimate a client
// gets in Retry-After follows what the running build took last time.
func TestBuildWaits(t *testing.T) {
	b := &builder{slot: make(chan struct{}, 1)}
	if _, err := b.acquire(context.Background(), WarmupHolder, nil); err != nil {
		t.Fatal(err)
	}
	told := make(chan string, 1)
	got := make(chan time.Duration, 1)
	go func() {
		queued, err := b.acquire(context.Background(), "report", func(holder string, _ time.Duration) { told <- holder })
		if err != nil {
			t.Error(err)
		}
		got <- queued
	}()
	if h := <-told; h != WarmupHolder {
		t.Fatalf("waiting for %q, want the warm-up", h)
	}
	// Nothing known yet: the cold warm-up's 30 s, plus a second for report.
	if ra := b.estimate("report"); ra < 30*time.Second || ra > 31*time.Second {
		t.Errorf("retryAfter = %s, want about 31s", ra)
	}
	b.release(WarmupHolder, 20*time.Second)
	queued := <-got
	if queued <= 0 {
		t.Errorf("queued = %s", queued)
	}
	if h, _, _ := b.Building(); h != "report" {
		t.Errorf("holder = %q after the warm-up", h)
	}
	b.release("report", 3*time.Second)
	if _, err := b.acquire(context.Background(), WarmupHolder, nil); err != nil {
		t.Fatal(err)
	}
	// The warm-up took 20 s and report 3 s last time.
	if ra := b.estimate("report"); ra < 22*time.Second || ra > 23*time.Second {
		t.Errorf("retryAfter = %s, want about 23s", ra)
	}
	// report's own build, running: what is left of its 3 s.
	b.release(WarmupHolder, 20*time.Second)
	if _, err := b.acquire(context.Background(), "report", nil); err != nil {
		t.Fatal(err)
	}
	if ra := b.estimate("report"); ra < 2*time.Second || ra > 3*time.Second {
		t.Errorf("retryAfter while report builds = %s, want about 3s", ra)
	}
}
