package admin

import (
	"errors"
	"sync"
	"time"

	"github.com/plugind/plugind/loader"
)

// Bounds of what History keeps.
const (
	buildsKept  = 10 // builds per plugin
	eventsKept  = 20 // lifecycle events per plugin
	recentKept  = 50 // events of all plugins, for the page's tail
	pluginsKept = 4096
)

// Build is one finished build of a plugin.
type Build struct {
	Finished time.Time
	Duration time.Duration
	OK       bool
	// Message is the loader's client-safe summary of a failure.
	Message string
	// Output is the compiler's output, paths relative to the source
	// directory; Diagnostics are the lines of it that name a place.
	Output      string
	Diagnostics []Diagnostic
}

// Started is when the build began.
func (b Build) Started() time.Time { return b.Finished.Add(-b.Duration) }

// Event is one thing that happened to a plugin.
type Event struct {
	At      time.Time
	Plugin  string
	Kind    loader.EventKind
	Version string
	Message string // client-safe, for failures
	// Detail is what the plugin wrote about a failure (an Init error, a
	// load check's output): for operators, which the page's readers are.
	Detail string
}

// History remembers, per plugin, its last builds (with their diagnostics
// and the source lines around them) and its last lifecycle events, fed by
// the loader's notifications. It is safe for concurrent use.
type History struct {
	srcDir string
	now    func() time.Time

	mu      sync.Mutex // guards the fields below
	plugins map[string]*pluginHistory
	recent  []Event // oldest first, at most recentKept
}

type pluginHistory struct {
	builds []Build // oldest first
	events []Event // oldest first
}

// NewHistory returns a History for plugins whose sources are in srcDir:
// diagnostics quote source lines from files there, and only there.
func NewHistory(srcDir string) *History {
	return &History{srcDir: srcDir, now: time.Now, plugins: make(map[string]*pluginHistory)}
}

// Observe records ev; use it as (part of) loader.Options.Notify. A failed
// build's diagnostics are quoted from the source now, while it is the
// source that failed: it reads at most a few small files.
func (h *History) Observe(ev loader.Event) {
	at := h.now()
	e := Event{At: at, Plugin: ev.Plugin, Kind: ev.Kind, Version: ev.Version}
	var lerr *loader.Error
	if ev.Err != nil {
		e.Message = "failed"
		if errors.As(ev.Err, &lerr) {
			e.Message, e.Detail = lerr.Msg, lerr.Detail
		}
	}
	var b *Build
	switch ev.Kind {
	case loader.EventBuilt:
		b = &Build{Finished: at, Duration: ev.Duration, OK: true}
	case loader.EventBuildFailed:
		b = &Build{Finished: at, Duration: ev.Duration, Message: e.Message}
		if lerr != nil {
			b.Output = lerr.Output
			b.Diagnostics = diagnose(h.srcDir, ev.Plugin, lerr.Output)
		}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.plugins[ev.Plugin]
	if p == nil {
		if len(h.plugins) >= pluginsKept {
			return
		}
		p = &pluginHistory{}
		h.plugins[ev.Plugin] = p
	}
	if b != nil {
		p.builds = appendBounded(p.builds, *b, buildsKept)
	}
	p.events = appendBounded(p.events, e, eventsKept)
	h.recent = appendBounded(h.recent, e, recentKept)
}

// appendBounded appends v to s, dropping the oldest beyond n.
func appendBounded[T any](s []T, v T, n int) []T {
	if len(s) >= n {
		s = append(s[:0], s[len(s)-n+1:]...)
	}
	return append(s, v)
}

// Builds returns plugin's last builds, newest first.
func (h *History) Builds(plugin string) []Build {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.plugins[plugin]
	if p == nil {
		return nil
	}
	return reversed(p.builds)
}

// Events returns plugin's last lifecycle events, newest first.
func (h *History) Events(plugin string) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.plugins[plugin]
	if p == nil {
		return nil
	}
	return reversed(p.events)
}

// Recent returns the last events of all plugins, newest first.
func (h *History) Recent() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return reversed(h.recent)
}

func reversed[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}
