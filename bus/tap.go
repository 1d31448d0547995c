package bus

import (
	"context"
	"sync"
)

// Tap fans observed messages out to streams (the /_EVENTS debugging
// stream). Each stream has a bounded buffer: a stream whose reader falls
// that far behind is dropped, its channel closed, rather than slow the
// bus or lose messages without a word.
type Tap struct {
	mu   sync.Mutex // guards subs, and sends on and closes of its channels
	subs map[chan Message]struct{}
}

// Observe hands m to every stream; use it as (part of) New's observe.
func (t *Tap) Observe(m Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ch := range t.subs {
		select {
		case ch <- m:
		default: // a slow reader: drop the stream
			delete(t.subs, ch)
			close(ch)
		}
	}
}

// Stream returns the messages observed from now on, buffering up to
// buffer of them (at least 1). The channel is closed when ctx ends, or
// earlier when the reader falls buffer messages behind: ctx.Err() tells
// which.
func (t *Tap) Stream(ctx context.Context, buffer int) <-chan Message {
	ch := make(chan Message, max(buffer, 1))
	t.mu.Lock()
	if t.subs == nil {
		t.subs = make(map[chan Message]struct{})
	}
	t.subs[ch] = struct{}{}
	t.mu.Unlock()
	context.AfterFunc(ctx, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if _, ok := t.subs[ch]; ok {
			delete(t.subs, ch)
			close(ch)
		}
	})
	return ch
}

// Streams is the number of open streams.
func (t *Tap) Streams() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.subs)
}
