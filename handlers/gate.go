package handlers

import (
	"net/http"
	"sync/atomic"
	"time"
)

// Gate holds requests that arrive while the server starts (Backstage's
// startup request pause): they wait up to Pause for Open, then get 503.
// The probes answer at once: alive, not ready.
type Gate struct {
	pause time.Duration
	h     atomic.Pointer[http.Handler]
	open  chan struct{}
}

var _ http.Handler = (*Gate)(nil)

// NewGate returns a closed gate.
func NewGate(pause time.Duration) *Gate {
	return &Gate{pause: pause, open: make(chan struct{})}
}

// Open lets requests through to h, the waiting ones first.
func (g *Gate) Open(h http.Handler) {
	g.h.Store(&h)
	close(g.open)
}

func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := g.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case "/healthz":
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	case "/readyz":
		writeJSON(w, http.StatusServiceUnavailable, Readiness{Status: "starting"})
		return
	}
	t := time.NewTimer(g.pause)
	defer t.Stop()
	select {
	case <-g.open:
		(*g.h.Load()).ServeHTTP(w, r)
	case <-t.C:
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "the server is starting; try again"})
	case <-r.Context().Done():
	}
}
