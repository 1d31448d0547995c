package loader

import (
	"slices"
	"sync"
	"time"
)

// How long List trusts its last look at the source directory: with the
// watcher running it tells of changes, and the TTL only covers events it
// may have missed; without it, the TTL bounds how stale a listing can be.
const (
	listTTLWatching = time.Minute
	listTTL         = 2 * time.Second
)

// changes is a generation counter with a channel closed at each change,
// for those who wait for the next one.
type changes struct {
	mu  sync.Mutex // guards gen and ch
	gen uint64
	ch  chan struct{} // closed at the next bump; nil: nobody waits
}

func (c *changes) bump() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

func (c *changes) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *changes) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// ListGeneration counts changes to what List reports, Health aside: a
// source added, edited or removed (as far as the loader has noticed, see
// List), a build started, a version loaded, reloaded, failed or removed.
// It is cheap: poll it, and call List when it moved.
func (l *Loader) ListGeneration() uint64 { return l.changed.generation() }

// ListChanged returns a channel closed at the next change to what List
// reports (when ListGeneration next moves), for live views.
func (l *Loader) ListChanged() <-chan struct{} { return l.changed.next() }

// scan is one look at the source directory, for List.
type scan struct {
	sources  []Source
	handlers map[string][]HandlerInfo // by plugin name
	at       time.Time
}

// invalidate makes List look at the source directory again, and counts
// a change.
func (l *Loader) invalidate() {
	l.lmu.Lock()
	l.scanned = nil
	l.lmu.Unlock()
	l.changed.bump()
}

// sources returns the source directory as List last saw it, looking
// again when the watcher or a lookup said it changed, or the TTL passed.
// A look that finds something different counts as a change.
func (l *Loader) sources() *scan {
	l.lmu.Lock()
	defer l.lmu.Unlock()
	ttl := listTTL
	if l.watching.Load() {
		ttl = listTTLWatching
	}
	if s := l.scanned; s != nil && time.Since(s.at) < ttl {
		return s
	}
	found, _, _ := l.Discover()
	s := &scan{sources: found, handlers: make(map[string][]HandlerInfo, len(found)), at: time.Now()}
	for _, src := range found {
		if l.onParse != nil {
			for _, f := range src.Files {
				l.onParse(f)
			}
		}
		s.handlers[src.Name] = SourceHandlers(src)
	}
	if prev := l.scanned; prev != nil && !prev.same(s) {
		l.changed.bump()
	}
	l.scanned = s
	return s
}

// same reports whether s and t found the same plugins and handlers.
func (s *scan) same(t *scan) bool {
	if !slices.EqualFunc(s.sources, t.sources, func(a, b Source) bool {
		return a.Name == b.Name && a.Kind == b.Kind && slices.Equal(a.Files, b.Files)
	}) {
		return false
	}
	for name, h := range s.handlers {
		if !slices.Equal(h, t.handlers[name]) {
			return false
		}
	}
	return true
}
