package server

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/bus"
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
	Kind       string  `json:"kind,omitempty"` // file, folder, prebuilt (registered, at start or later)
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
	payload := pluginEvent{Plugin: ev.Plugin, Kind: string(ev.Source), Version: ev.Version, DurationMS: float64(ev.Duration.Microseconds()) / 1000}
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

// busEvent is the format of GET /_EVENTS: every message, as an event
// named after its kind, with its name, payload (when JSON), deliveries
// and error.
func busEvent(m bus.Message) (event string, data []byte, ok bool) {
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
	return string(m.Kind), data, err == nil
}
