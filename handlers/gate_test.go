package handlers

import (
	"net/http"
	"net/http/httptest"
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
	done := make(chan int)
	go func() { done <- serve("/x") }()
	time.Sleep(10 * time.Millisecond)
	g.Open(ok)
	if code := <-done; code != http.StatusTeapot {
		t.Errorf("a request waiting at the gate got %d, want the handler's answer", code)
	}
	if serve("/readyz") != http.StatusTeapot {
		t.Error("an open gate still answers probes itself")
	}
}
