package loader

import "time"

// EventKind names what happened to a plugin.
type EventKind string

const (
	EventBuilt       EventKind = "built"        // a build succeeded
	EventBuildFailed EventKind = "build_failed" // a build failed
	EventLoaded      EventKind = "loaded"       // a version started serving
	EventReloaded    EventKind = "reloaded"     // a new version replaced the current one
	EventLoadFailed  EventKind = "load_failed"  // a built plugin was refused or failed to load
	EventRemoved     EventKind = "removed"      // its source went; it is no longer routed
	// EventRegistered: the watcher found the source of a plugin that was
	// not there at start (the server tells those it finds itself), or
	// that came back after it was removed.
	EventRegistered EventKind = "registered"
	// EventSourceChanged: the watcher (see Watch) saw the plugin's source,
	// or the go.mod or go.sum that declares its requirements, change, and
	// the files are quiet again. It comes before the loader brings the
	// plugin up to date, whether or not the loader has loaded it, so that
	// what runs plugins elsewhere (in processes of their own) can do the
	// same. A change of lib/go.mod or lib/go.sum comes as one event for
	// every plugin in the source directory; a change of a package of
	// lib/go.mod's module (lib/cart/), as one for every plugin that
	// declares its requirements there (single files, folders without a
	// go.mod), whether or not it imports the package: its key tells.
	EventSourceChanged EventKind = "source_changed"
)

// Event is something that happened to a plugin, for Options.Notify.
type Event struct {
	Kind     EventKind
	Plugin   string
	Version  string        // content hash, where there is one
	Duration time.Duration // of the build, for build events
	Err      error         // for failures
	Source   Kind          // for EventRegistered: file, folder or prebuilt
}

// notify delivers ev, if anyone listens.
func (l *Loader) notify(ev Event) {
	if l.onEvent != nil {
		l.onEvent(ev)
	}
}

// Stat is one plugin's loaded versions, for metrics.
type Stat struct {
	Plugin   string
	Versions int
	Bytes    int64
}

// Stats reports each plugin's loaded versions and the bytes they hold.
// It is cheap: no disk, no plugin code.
func (l *Loader) Stats() []Stat {
	entries := l.entries()
	out := make([]Stat, 0, len(entries))
	for _, e := range entries {
		e.mu.Lock()
		s := Stat{Plugin: e.name, Versions: len(e.versions)}
		for _, v := range e.versions {
			s.Bytes += v.bytes
		}
		e.mu.Unlock()
		out = append(out, s)
	}
	return out
}
