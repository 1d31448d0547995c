package handlers

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestServeWithTimeoutReleases: the concurrency slot is free by the time
// the caller has the outcome, whatever it is, so a client that got its
// answer never finds its own finished request still counted.
func TestServeWithTimeoutReleases(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name  string
		serve func(http.ResponseWriter, *http.Request) error
		abort bool
		err   error
	}{
		{"answered", func(w http.ResponseWriter, _ *http.Request) error { _, err := w.Write([]byte("ok")); return err }, false, nil},
		{"failed", func(http.ResponseWriter, *http.Request) error { return boom }, false, boom},
		{"aborted", func(http.ResponseWriter, *http.Request) error { panic(http.ErrAbortHandler) }, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 3 {
				var released atomic.Bool
				var aborted any
				var err error
				func() {
					defer func() { aborted = recover() }()
					err = serveWithTimeout(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), time.Minute, tt.serve, func() {
						time.Sleep(time.Millisecond) // a release the scheduler is slow to run
						released.Store(true)
					}, "p")
				}()
				if !released.Load() {
					t.Fatal("the slot was still held when the caller had the outcome")
				}
				if (aborted != nil) != tt.abort || !errors.Is(err, tt.err) {
					t.Fatalf("abort %v, err %v; want abort %v, err %v", aborted, err, tt.abort, tt.err)
				}
			}
		})
	}
}
