package bus

import (
	"context"
	"sync"
)

// Tap fans observed messages out to streams (the /_EVENTS debugging
// stream). A stream that does not keep up misses messages rather than
// slowing the bus.
type Tap struct {
	mu   sync.Mutex // guards subs
	subs map[chan Message]struct{}
}

// Observe hands m to every stream; use it as (part of) New's observe.
func (t *Tap) Observe(m Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ch := range t.subs {
		select {
		case ch <- m:
		default: // a slow reader loses this one
		}
	}
}

// Stream returns the messages observed from now until ctx ends.
func (t *Tap) Stream(ctx context.Context) <-chan Message {
	ch := make(chan Message, 256)
	t.mu.Lock()
	if t.subs == nil {
		t.subs = make(map[chan Message]struct{})
	}
	t.subs[ch] = struct{}{}
	t.mu.Unlock()
	go func() {
		<-ctx.Done()
		t.mu.Lock()
		delete(t.subs, ch)
		close(ch)
		t.mu.Unlock()
	}()
	return ch
}
