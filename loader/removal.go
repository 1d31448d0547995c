package loader

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/fsnotify/fsnotify"

	"github.com/plugind/plugind/build"
)

// registry is the plugins in the source directory as the watcher last
// saw them: those found when watching began, and those it saw added
// since. It lets the watcher name a plugin whose source is gone (a
// folder removed or moved away leaves nothing to stat) and log a plugin
// added while the server runs as the server logs those found at start.
type registry struct {
	mu    sync.Mutex // guards names
	names map[string]bool
}

// reset makes found the known plugins, silently: the server logs those
// it finds at start.
func (r *registry) reset(found []Source) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.names = make(map[string]bool, len(found))
	for _, src := range found {
		r.names[src.Name] = true
	}
}

// add records name and reports whether it was new.
func (r *registry) add(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names == nil {
		r.names = make(map[string]bool)
	}
	if r.names[name] {
		return false
	}
	r.names[name] = true
	return true
}

func (r *registry) remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.names, name)
}

func (r *registry) has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.names[name]
}

func (r *registry) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.names))
	for name := range r.names {
		out = append(out, name)
	}
	return out
}

// knows reports whether name is a plugin the loader has seen: loaded
// (or tried), or in the source directory when the watcher last looked.
func (l *Loader) knows(name string) bool {
	return l.lookup(name) != nil || l.known.has(name)
}

// noteSource brings the registry up to date with plugin name's source,
// which the watcher saw change: a plugin new to it is logged as the
// server logs those it finds at start ("plugin registered"), once, and
// told (EventRegistered); one
// whose source is gone is forgotten, so that it is logged again if it
// comes back. Middleware is no plugin with routes: it is left out, as
// at start.
func (l *Loader) noteSource(name string) {
	if _, ok := build.MiddlewareFile(name); ok {
		return
	}
	src, err := l.pipe.Find(name)
	switch {
	case err == nil:
		if l.known.add(name) {
			l.log.Info().Str("plugin", name).Str("kind", string(src.Kind)).Msg("plugin registered")
			l.notify(Event{Kind: EventRegistered, Plugin: name, Source: src.Kind})
		}
	case errors.Is(err, ErrNotFound):
		l.known.remove(name)
	}
}

// sourceDir is the watcher's key for a change of the source directory
// itself (moved away, moved back, removed, made again): every plugin in
// it changed.
const sourceDir = "lib/src"

// watchSources watches the source directory and each folder plugin in
// it, as Watch does: after the directory came back (moved away and back,
// or made again), since the watch on it ended when it went.
func (l *Loader) watchSources(w *fsnotify.Watcher) {
	src := l.pipe.SrcDir()
	_ = w.Remove(src) // a link re-pointed: watch its new target
	if err := w.Add(src); err != nil && !errors.Is(err, fs.ErrNotExist) {
		l.log.Warn().Err(err).Str("dir", src).Msg("watching plugin sources again")
	}
	l.watchFolders(w)
}

// watchFolders watches each folder plugin in the source directory, with
// the directories of its own packages.
func (l *Loader) watchFolders(w *fsnotify.Watcher) {
	src := l.pipe.SrcDir()
	entries, _ := os.ReadDir(src)
	for _, e := range entries {
		path := filepath.Join(src, e.Name())
		if isDir(path, e) && ValidName(e.Name()) && !Ignored(e.Name()) {
			watchTree(w, path)
		}
	}
}

// sourceDirChanged brings every plugin up to date after the source
// directory itself went or came back: those in it now, those loaded and
// those it held before, each as if its own source had changed (told to
// Notify, registered or removed, reloaded).
func (l *Loader) sourceDirChanged() {
	if l.ctx.Err() != nil {
		return
	}
	l.invalidate()
	found, _, _ := l.Discover() // a directory gone holds no plugin
	names := l.known.list()
	for _, src := range found {
		names = append(names, src.Name)
	}
	for _, e := range l.entries() {
		if _, ok := build.MiddlewareFile(e.name); !ok {
			names = append(names, e.name)
		}
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		l.sourceChanged(name)
	}
}
