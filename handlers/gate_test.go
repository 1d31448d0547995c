package handlers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	g := NewGate(50 * time.Millisecond)
	serve := func(path string) int {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code
	}
	if serve("/healthz") != 200 || serve("/readyz") != 503 {
		t.Error("probes while starting: want alive, not ready")
	}
	if code := serve("/x"); code != 503 {
		t.Errorf("past the pause: %d, want 503", code)
	}
	// A request waiting at the gate: the gate watches its context only
	// while it waits, so the first call to Done says it is waiting.
	g = NewGate(time.Minute)
	waiting := &doneWatch{Context: context.Background(), called: make(chan struct{})}
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil).WithContext(waiting))
		done <- rec.Code
	}()
	select {
	case <-waiting.called:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never waited at the gate")
	}
	g.Open(ok)
	if code := <-done; code != http.StatusTeapot {
		t.Errorf("a request waiting at the gate got %d, want the handler's answer", code)
	}
	if serve("/readyz") != http.StatusTeapot {
		t.Error("an open gate still answers probes itself")
	}
}

// doneWatch is a context that reports the first call of Done.
type doneWatch struct {
	context.Context
	once   sync.Once
	called chan struct{}
}

func (c *doneWatch) Done() <-chan struct{} {
	c.once.Do(func() { close(c.called) })
	return c.Context.Done()
}
