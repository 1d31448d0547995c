// Package sse serves the bus's traffic as Server-Sent Events: the
// debugging stream GET /_EVENTS and the admin page's live tail,
// /_ADMIN/events, each in its own format.
//
// A stream is a response that does not end, so every stream of one
// Streams is bounded, whichever handler serves it: at most Max are open
// at once (more are answered 503 with Retry-After), each write must
// finish within WriteTimeout (a client that stops reading is dropped
// rather than hold a goroutine and the connection's buffers), a reader
// that falls Buffer messages behind is dropped rather than slow the bus,
// and every stream ends when Closing is closed, as the server starts
// shutting down, so that none holds up the shutdown.
package sse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/bus"
)

// Buffer is how many messages a reader may fall behind before its stream
// is dropped.
const Buffer = 256

// Source streams bus traffic; *bus.Tap implements it.
type Source interface {
	Stream(ctx context.Context, buffer int) <-chan bus.Message
}

// Options configure a Streams.
type Options struct {
	// Source is the traffic served; required.
	Source Source
	// Max bounds the streams open at once, across all of this Streams'
	// handlers (bus.maxstreams, validated positive by config).
	Max int
	// WriteTimeout bounds each write to a stream (bus.writetimeout,
	// validated positive by config).
	WriteTimeout time.Duration
	// Closing, if set, is closed when the server starts shutting down:
	// every stream ends then.
	Closing <-chan struct{}
	Log     zerolog.Logger
}

// Streams serves streams of one Source under shared limits.
type Streams struct {
	opts Options
	open atomic.Int64 // streams being served
}

// New returns the Streams opts describe.
func New(opts Options) *Streams {
	return &Streams{opts: opts}
}

// Open is the number of streams being served.
func (s *Streams) Open() int { return int(s.open.Load()) }

// Format turns a message into the event sent for it: the event's name
// ("" for none: the client's default, "message") and its data, which
// must not contain a newline (JSON from encoding/json does not). A
// message it returns ok false for is not sent.
type Format func(m bus.Message) (event string, data []byte, ok bool)

// Handler serves streams of the messages format accepts. Each opens with
// the comment ": plugind <name>", and name is on the stream's log lines.
func (s *Streams) Handler(name string, format Format) http.Handler {
	return &handler{streams: s, name: name, format: format, log: s.opts.Log.With().Str("stream", name).Logger()}
}

type handler struct {
	streams *Streams
	name    string
	format  Format
	log     zerolog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.streams
	if max := s.opts.Max; s.open.Add(1) > int64(max) {
		s.open.Add(-1)
		h.log.Warn().Int("max", max).Msg("event stream refused: bus.maxstreams are open")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"error": fmt.Sprintf("too many event streams: the limit is %d (bus.maxstreams)", max),
		})
		return
	}
	defer s.open.Add(-1)
	w.Header().Set("Content-Type", "text/event-stream")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-cache")
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	ctx := r.Context()
	stream := s.opts.Source.Stream(ctx, Buffer) // before the client can know it is open
	rc := http.NewResponseController(w)
	deadlines := true
	write := func(b []byte) error {
		// A stream outlives http.writetimeout; each write has its own.
		if err := rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout)); err != nil && deadlines {
			deadlines = false // a wrapper without Unwrap: serve, unbounded
			h.log.Warn().Err(err).Msg("event stream writes cannot be bounded (bus.writetimeout)")
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	w.WriteHeader(http.StatusOK)
	// A comment first: it gets the headers out through every buffering
	// writer (compression decides on the first bytes), so the client knows
	// the stream is open before any message arrives.
	if err := write([]byte(": plugind " + h.name + "\n\n")); err != nil {
		h.dropped(err)
		return
	}
	for {
		var m bus.Message
		select {
		case msg, ok := <-stream:
			if !ok {
				if ctx.Err() == nil {
					h.dropped(fmt.Errorf("the client fell %d messages behind", Buffer))
				}
				return
			}
			m = msg
		case <-s.opts.Closing: // nil: never
			return
		}
		event, data, ok := h.format(m)
		if !ok {
			continue
		}
		var b []byte
		if event != "" {
			b = fmt.Appendf(b, "event: %s\n", event)
		}
		b = fmt.Appendf(b, "data: %s\n\n", data)
		if err := write(b); err != nil {
			// A failed write cancels ctx: a timeout is worth a line, a
			// client that left is not.
			if errors.Is(err, os.ErrDeadlineExceeded) {
				h.dropped(fmt.Errorf("the client stopped reading: %w", err))
			}
			return
		}
	}
}

func (h *handler) dropped(err error) {
	h.log.Warn().Err(err).Msg("event stream dropped")
}
