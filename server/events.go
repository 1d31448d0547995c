package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/bus"
	"github.com/plugind/plugind/handlers"
	"github.com/plugind/plugind/loader"
)

// Server events on the bus. Plugins subscribe in their Init hook:
//
//	sdk.Subscribe(ctx, "plugind.plugin.reloaded", func(ctx context.Context, e PluginEvent) error {...})
//
// Those published before the server is ready (plugind.plugin.registered,
// plugind.server.starting, middleware plugins built and loaded) are kept
// by the bus and replayed to each listener that subscribes later, first.
const (
	EventServerStarting = "plugind.server.starting"
	EventServerStopping = "plugind.server.stopping"
	// plugind.plugin.<kind>: registered, built, build_failed, loaded,
	// reloaded, load_failed, removed.
	eventPluginPrefix = "plugind.plugin."
)

// pluginEvent is the payload of plugind.plugin.* events.
type pluginEvent struct {
	Plugin     string  `json:"plugin"`
	Kind       string  `json:"kind,omitempty"` // file, folder, prebuilt (registered)
	Version    string  `json:"version,omitempty"`
	DurationMS float64 `json:"duration_ms,omitempty"`
	Error      string  `json:"error,omitempty"` // client-safe: names, no paths
}

// serverEvent is the payload of plugind.server.* events.
type serverEvent struct {
	Addr string `json:"addr"`
}

// pluginEvent turns a loader event into metrics and a bus event.
func (s *Server) pluginEvent(ev loader.Event) {
	s.metrics.Event(ev)
	s.adminEvent(ev)
	payload := pluginEvent{Plugin: ev.Plugin, Version: ev.Version, DurationMS: float64(ev.Duration.Microseconds()) / 1000}
	if ev.Err != nil {
		payload.Error = "failed"
		if le, ok := ev.Err.(*loader.Error); ok {
			payload.Error = le.Msg
		}
	}
	s.events.emit(eventPluginPrefix+string(ev.Kind), payload)
}

// eventQueue publishes server events from one goroutine, in order: the
// loader must not wait for plugins' listeners, nor can listeners that
// call back into the loader deadlock it.
type eventQueue struct {
	bus  *bus.Bus
	log  zerolog.Logger
	ch   chan queued
	done chan struct{}

	mu     sync.Mutex // guards closed, and sends on ch against its close
	closed bool
}

type queued struct {
	name    string
	payload []byte
	then    func() // instead of an event: run in turn
}

func newEventQueue(b *bus.Bus, log zerolog.Logger) *eventQueue {
	q := &eventQueue{bus: b, log: log, ch: make(chan queued, 1024), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *eventQueue) run() {
	defer close(q.done)
	for e := range q.ch {
		if e.then != nil {
			e.then()
			continue
		}
		if err := q.bus.Publish(context.Background(), e.name, e.payload); err != nil {
			q.log.Warn().Err(err).Str("event", e.name).Msg("a listener of a server event failed")
		}
	}
}

// emit queues an event; after close, or with the queue full, it is
// dropped (the latter with a warning).
func (q *eventQueue) emit(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	select {
	case q.ch <- queued{name: name, payload: data}:
	default:
		q.log.Warn().Str("event", name).Msg("server event queue full; event dropped")
	}
}

// then runs fn on the event goroutine after the events queued so far;
// after close it does not run.
func (q *eventQueue) then(fn func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.ch <- queued{then: fn} // may wait for room: fn must not be lost
	}
}

// close publishes what is queued and stops, waiting for that until ctx
// ends.
func (q *eventQueue) close(ctx context.Context) error {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("listeners of server events still running: %w", ctx.Err())
	}
}

// streamBuffer is how many messages an /_EVENTS reader may fall behind
// before its stream is dropped.
const streamBuffer = 256

// eventStreams serves GET /_EVENTS: bus traffic as Server-Sent Events,
// for debugging. A debugging stream never slows the bus nor holds a
// goroutine for a client that stopped reading: at most max streams are
// open at once (more get 503), each write must finish within
// writeTimeout, and a reader that falls streamBuffer messages behind is
// dropped. Streams end when the server starts shutting down (closing).
type eventStreams struct {
	tap          *bus.Tap
	max          int
	writeTimeout time.Duration
	closing      <-chan struct{}
	log          zerolog.Logger

	open atomic.Int64 // streams being served
}

var _ handlers.EventStream = (*eventStreams)(nil)

func (e *eventStreams) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e.open.Add(1) > int64(e.max) {
		e.open.Add(-1)
		e.log.Warn().Int("max", e.max).Msg("event stream refused: bus.maxstreams are open")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"error": fmt.Sprintf("too many event streams: the limit is %d (bus.maxstreams)", e.max),
		})
		return
	}
	defer e.open.Add(-1)
	ctx := r.Context()
	stream := e.tap.Stream(ctx, streamBuffer) // before the client can know it is open
	rc := http.NewResponseController(w)
	deadlines := true
	write := func(b []byte) error {
		// A stream outlives http.writetimeout; each write has its own.
		if err := rc.SetWriteDeadline(time.Now().Add(e.writeTimeout)); err != nil && deadlines {
			deadlines = false // a wrapper without Unwrap: serve, unbounded
			e.log.Warn().Err(err).Msg("event stream writes cannot be bounded (bus.writetimeout)")
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	// A comment first: it gets the headers out through every buffering
	// writer (compression decides on the first bytes), so the client knows
	// the stream is open before any message arrives.
	if err := write([]byte(": plugind bus\n\n")); err != nil {
		e.dropped(err)
		return
	}
	for {
		var m bus.Message
		select {
		case msg, ok := <-stream:
			if !ok {
				if ctx.Err() == nil {
					e.dropped(fmt.Errorf("the client fell %d messages behind", streamBuffer))
				}
				return
			}
			m = msg
		case <-e.closing:
			return
		}
		var errText string
		if m.Err != nil {
			errText = m.Err.Error()
		}
		payload := json.RawMessage(m.Payload)
		if !json.Valid(payload) {
			payload = nil
		}
		data, err := json.Marshal(struct {
			Kind      bus.Kind        `json:"kind"`
			Name      string          `json:"name"`
			Payload   json.RawMessage `json:"payload,omitempty"`
			Delivered int             `json:"delivered"`
			Error     string          `json:"error,omitempty"`
		}{m.Kind, m.Name, payload, m.Delivered, errText})
		if err != nil {
			continue
		}
		if err := write(fmt.Appendf(nil, "event: %s\ndata: %s\n\n", m.Kind, data)); err != nil {
			// A failed write cancels ctx: a timeout is worth a line, a
			// client that left is not.
			if errors.Is(err, os.ErrDeadlineExceeded) {
				e.dropped(fmt.Errorf("the client stopped reading: %w", err))
			}
			return
		}
	}
}

func (e *eventStreams) dropped(err error) {
	e.log.Warn().Err(err).Msg("event stream dropped")
}
