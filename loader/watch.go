package loader

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/plugind/plugind/build"
)

// debounce is how long a plugin's sources must be quiet before it is
// rebuilt: editors save in several steps.
const debounce = 150 * time.Millisecond

// Watch watches the source directory, each folder plugin in it, the
// go.mod and go.sum beside the source directory (lib/go.mod, which
// declares the requirements of single-file plugins), lib/vendor's
// modules.txt, and the directories of that module's own packages
// (lib/cart/, see libTree), and brings a loaded (or failed) plugin up to
// date when its source, a file it embeds (//go:embed), its requirements
// or a package of lib/go.mod's module change:
// the new version is built once, in the background, and swapped in; the
// current one serves until then, and keeps serving if the new one fails.
// Plugins never requested stay unbuilt. Each change, once the files are
// quiet, is told to Options.Notify first (EventSourceChanged), for plugins
// the loader does not run. Watch returns once watching has started; Close
// stops it and waits for it.
func (l *Loader) Watch() error {
	if !l.reload {
		return errors.New("reload is off")
	}
	if !l.begin() {
		return closedError("")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		l.end()
		return err
	}
	if err := w.Add(l.pipe.SrcDir()); err != nil {
		w.Close()
		l.end()
		return err
	}
	// lib/go.mod and lib/go.sum: a directory watch, since editors and
	// the go command replace files rather than write them in place.
	// The directories under it hold the packages of lib/go.mod's module.
	lib := filepath.Dir(l.pipe.SrcDir())
	_ = w.Add(lib)
	_ = w.Add(filepath.Join(lib, "vendor")) // its modules.txt, if lib/go.mod is vendored
	pkgs := &libTree{root: lib, src: l.pipe.SrcDir(), cache: l.pipe.CacheDir(), dirs: make(map[string]bool)}
	pkgs.add(w, lib)
	l.watchFolders(w)
	if found, _, err := l.Discover(); err == nil {
		l.known.reset(found)
	}
	l.watching.Store(true)
	go l.watch(w, pkgs)
	return nil
}

// watch runs the watcher: pkgs is its own.
func (l *Loader) watch(w *fsnotify.Watcher, pkgs *libTree) {
	defer l.end()
	defer l.watching.Store(false)
	defer w.Close()
	var mu sync.Mutex // guards timers
	timers := make(map[string]*time.Timer)
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, t := range timers {
			t.Stop()
		}
	}()
	for {
		select {
		case <-l.ctx.Done():
			return
		case err := <-w.Errors:
			l.log.Warn().Err(err).Msg("watching plugin sources")
		case ev := <-w.Events:
			// Any change may change the listing (a folder removed, a
			// file renamed); one that concerns a plugin may reload it.
			// Both wait until the sources are quiet. Key "" is the
			// listing alone.
			name := libPackages
			if !pkgs.event(w, ev) {
				var isDir bool
				name, isDir = l.pluginOf(ev)
				switch {
				case isDir && ev.Has(fsnotify.Create) && name == sourceDir:
					l.watchSources(w) // its watch ended when it went
				case isDir && ev.Has(fsnotify.Create) && name == everyPlugin:
					_ = w.Add(ev.Name) // lib/vendor, made by go mod vendor
				case isDir && ev.Has(fsnotify.Create):
					_ = w.Remove(ev.Name) // a link re-pointed: watch its new target
					watchTree(w, ev.Name)
				}
			}
			mu.Lock()
			if t, ok := timers[name]; ok {
				t.Reset(debounce)
			} else if name == "" {
				timers[name] = time.AfterFunc(debounce, l.invalidate)
			} else if name == everyPlugin {
				timers[name] = time.AfterFunc(debounce, l.requirementsChanged)
			} else if name == libPackages {
				timers[name] = time.AfterFunc(debounce, l.libPackagesChanged)
			} else if name == srcFiles {
				timers[name] = time.AfterFunc(debounce, l.srcFilesChanged)
			} else if name == middlewareFiles {
				timers[name] = time.AfterFunc(debounce, l.middlewareFilesChanged)
			} else if name == sourceDir {
				timers[name] = time.AfterFunc(debounce, l.sourceDirChanged)
			} else {
				timers[name] = time.AfterFunc(debounce, func() { l.sourceChanged(name) })
			}
			mu.Unlock()
		}
	}
}

// watchTree watches dir and every directory under it but hidden ones: a
// folder plugin's own packages (lib/src/shop/cart/) are part of it, and
// fsnotify watches one directory, not a tree.
func watchTree(w *fsnotify.Watcher, dir string) {
	walkDirs(dir, func(path, name string) bool {
		if path != dir && strings.HasPrefix(name, ".") {
			return false
		}
		_ = w.Add(path)
		return true
	})
}

// isDir reports whether entry e, at path, is a directory or a symbolic
// link to one.
func isDir(path string, e fs.DirEntry) bool {
	if e.IsDir() {
		return true
	}
	if e.Type()&fs.ModeSymlink == 0 {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// walkDirs calls visit for root and each directory under it, named by
// its path under root, descending into those visit returns true for.
// It follows symbolic links to directories, as the go command builds
// through them: a package or a plugin folder linked into lib/ from
// elsewhere is watched where it is linked (the kernel watches the
// link's target; events name the path under root). A directory already
// visited, by its real path, is not visited again: a link to a parent
// is no endless tree.
func walkDirs(root string, visit func(path, name string) bool) {
	seen := make(map[string]bool)
	var walk func(path, name string)
	walk = func(path, name string) {
		real, err := filepath.EvalSymlinks(path)
		if err != nil || seen[real] {
			return // gone meanwhile, a dangling link, or a loop
		}
		seen[real] = true
		if !visit(path, name) {
			return
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return
		}
		for _, e := range entries {
			if child := filepath.Join(path, e.Name()); isDir(child, e) {
				walk(child, e.Name())
			}
		}
	}
	walk(root, filepath.Base(root))
}

// libTree is the directories the watcher watches for the packages of
// lib/go.mod's module (root, beside the source directory): a plugin that
// declares its requirements there may import plugind.local/lib/cart from
// lib/cart/, and the package is part of its key. It is every directory
// under root that may hold a package of the module, whether or not a
// plugin imports it today: which ones do only a read of every plugin and
// of what its imports import tells, and an edit of a plugin would change
// the answer. A change in one that no plugin imports costs a look at the
// keys of the plugins that declare lib/go.mod, and no build. Left out:
// the source directory (watched on its own), the artifact cache, hidden
// directories and those the go command leaves out of a module's packages
// ("_*", testdata, vendor: other modules' copies) and directories with a
// go.mod of their own, which are other modules. Go files count, and in a
// package's directory (not root) any other file but an editor's, which
// the package may embed.
type libTree struct {
	root, src, cache string
	dirs             map[string]bool // watched, root excluded
}

// skip reports whether directory path, named name, and those under it
// hold no packages of the module.
func (t *libTree) skip(path, name string) bool {
	switch {
	case path == t.src, path == t.cache, name == "vendor", name == "testdata",
		strings.HasPrefix(name, "."), strings.HasPrefix(name, "_"):
		return true
	}
	_, err := os.Stat(filepath.Join(path, "go.mod"))
	return err == nil
}

// add watches dir, root or a directory under it, and the directories
// under dir that may hold packages.
func (t *libTree) add(w *fsnotify.Watcher, dir string) {
	walkDirs(dir, func(path, name string) bool {
		switch {
		case path == t.root:
			return true
		case t.skip(path, name):
			return false
		}
		if w.Add(path) == nil {
			t.dirs[path] = true
		}
		return true
	})
}

// forget stops watching dir, which is gone (removed, or moved away), and
// the directories under it.
func (t *libTree) forget(w *fsnotify.Watcher, dir string) {
	for path := range t.dirs {
		if path == dir || strings.HasPrefix(path, dir+string(filepath.Separator)) {
			_ = w.Remove(path) // a directory moved away is watched still
			delete(t.dirs, path)
		}
	}
}

// event reports whether ev concerns the packages under root: a Go file in
// root or in a watched directory, or such a directory made, removed or
// moved. It watches a directory made (and those in it) and forgets one
// gone.
func (t *libTree) event(w *fsnotify.Watcher, ev fsnotify.Event) bool {
	parent := filepath.Dir(ev.Name)
	if parent != t.root && !t.dirs[parent] {
		return false
	}
	if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() { // a link to one too
		if t.skip(ev.Name, filepath.Base(ev.Name)) {
			return false
		}
		if t.dirs[ev.Name] && ev.Has(fsnotify.Create) {
			t.forget(w, ev.Name) // a link re-pointed: watch its new target
		}
		if !t.dirs[ev.Name] {
			t.add(w, ev.Name)
		}
		return true
	}
	if t.dirs[ev.Name] {
		t.forget(w, ev.Name)
		return true
	}
	// Go files, and in a package's directory (not root, which holds
	// go.mod, go.sum and prebuilt libraries) any other file that the
	// package may embed (//go:embed): the keys tell which count.
	if parent == t.root {
		return strings.HasSuffix(ev.Name, ".go")
	}
	return !scratch(filepath.Base(ev.Name))
}

// scratch reports whether a file named name is an editor's or a tool's
// own (hidden, a backup): no source, and not embedded by a directory
// pattern either.
func scratch(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~")
}

// everyPlugin is pluginOf's answer for a change of lib/go.mod or
// lib/go.sum: every plugin may declare its requirements there.
const everyPlugin = "*"

// libPackages is the watcher's key for a change of the packages of
// lib/go.mod's module (see libTree).
const libPackages = "lib/"

// srcFiles is pluginOf's answer for a file in the source directory that
// is no plugin's source: one a single-file plugin may embed
// (//go:embed page.html, templates/*), which only its key tells.
const srcFiles = "src/"

// middlewareFiles is pluginOf's answer for a file in SRC/middlewares that
// is no middleware's source: one a single-file middleware may embed.
const middlewareFiles = "middlewares/"

// pluginOf maps a file event to the plugin it concerns.
func (l *Loader) pluginOf(ev fsnotify.Event) (name string, isDir bool) {
	if ev.Name == l.pipe.SrcDir() { // moved away or back, removed or made
		fi, err := os.Stat(ev.Name)
		return sourceDir, err == nil && fi.IsDir()
	}
	lib := filepath.Dir(l.pipe.SrcDir())
	switch filepath.Dir(ev.Name) {
	case lib:
		switch base := filepath.Base(ev.Name); base {
		case "go.mod", "go.sum":
			return everyPlugin, false
		case "vendor":
			// Made (or replaced) by go mod vendor: watched, with its
			// modules.txt, which the keys of plugins declaring
			// lib/go.mod read.
			fi, err := os.Stat(ev.Name)
			return everyPlugin, err == nil && fi.IsDir()
		}
		return "", false
	case filepath.Join(lib, "vendor"):
		if filepath.Base(ev.Name) == "modules.txt" {
			return everyPlugin, false
		}
		return "", false
	}
	rel, err := filepath.Rel(l.pipe.SrcDir(), ev.Name)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", false
	}
	first, rest, nested := strings.Cut(rel, string(filepath.Separator))
	if nested && first == build.MiddlewareDir {
		// SRC/middlewares/FILE.go, or a file of the folder
		// SRC/middlewares/FILE/, Go or one it may embed: its key tells.
		// Another file in SRC/middlewares, one a single-file middleware
		// may embed.
		file, _, inFolder := strings.Cut(rest, string(filepath.Separator))
		base, isGo := strings.CutSuffix(file, ".go")
		switch {
		case scratch(filepath.Base(rest)) || Ignored(file):
			return "", false
		case inFolder && ValidName(file):
			return build.MiddlewareName(file), false
		case isGo && ValidName(base):
			return build.MiddlewareName(base), false
		}
		if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
			return "", false
		}
		return middlewareFiles, false
	} else if nested {
		// A folder plugin's file, go.mod or go.sum, a file or directory
		// of one of its own packages (cart/cart.go), or a file it may
		// embed (static/index.html): its key tells. In a directory that
		// holds no folder plugin, a file a single-file plugin may embed
		// (templates/page.tmpl).
		switch fi, err := os.Stat(ev.Name); {
		case err == nil && fi.IsDir():
			isDir = true
		case scratch(filepath.Base(rest)):
			return "", false
		case !strings.HasSuffix(rest, ".go") && rest != "go.mod" && rest != "go.sum":
			if src, err := l.pipe.Find(first); err != nil || src.Kind != KindFolder {
				return srcFiles, false
			}
		}
		name = first
	} else if n, ok := strings.CutSuffix(first, ".go"); ok && !strings.HasSuffix(first, "_test.go") {
		name = n
	} else if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
		name, isDir = first, true
	} else if err != nil && l.knows(first) {
		// Gone, and a plugin's name: a folder plugin removed or moved
		// away, which its reload finds gone.
		name = first
	} else if !scratch(first) && !strings.HasSuffix(first, ".go") {
		return srcFiles, false // page.html beside page.go
	} else {
		return "", false
	}
	if !ValidName(name) || Ignored(name) {
		return "", false
	}
	return name, isDir
}

// sourceChanged tells Notify that plugin name's source changed, and
// brings the plugin up to date.
func (l *Loader) sourceChanged(name string) {
	if l.ctx.Err() != nil {
		return
	}
	l.notify(Event{Kind: EventSourceChanged, Plugin: name})
	l.noteSource(name)
	l.refresh(name)
}

// requirementsChanged tells Notify that the source of every plugin in the
// source directory changed, since lib/go.mod or lib/go.sum did, and
// brings every plugin requested before up to date.
func (l *Loader) requirementsChanged() {
	if l.ctx.Err() != nil {
		return
	}
	l.invalidate()
	found, _, err := l.Discover()
	if err != nil {
		l.log.Warn().Err(err).Msg("listing plugin sources after a change of their requirements")
	}
	for _, src := range found {
		l.notify(Event{Kind: EventSourceChanged, Plugin: src.Name})
	}
	for _, e := range l.entries() {
		l.refresh(e.name)
	}
}

// libPackagesChanged tells Notify that the source of every plugin that
// declares its requirements in lib/go.mod changed, since a package of
// that module did, and brings those requested before up to date. Which
// of them import the package only their keys tell: a plugin whose key
// did not change is neither built nor replaced, in-process (update) or
// in a process (isolate's Reload). Middleware loads once: a loaded one
// whose key the change moved is warned about (see staleMiddleware),
// before the plugins are told.
func (l *Loader) libPackagesChanged() {
	if l.ctx.Err() != nil {
		return
	}
	lib := filepath.Dir(l.pipe.SrcDir())
	for _, e := range l.entries() {
		if _, ok := build.MiddlewareFile(e.name); ok {
			l.staleMiddleware(e, func(src Source) bool { return l.pipe.DeclaredIn(src) == lib }, "a package of lib/go.mod's module it imports")
		}
	}
	found, _, err := l.Discover()
	if err != nil {
		l.log.Warn().Err(err).Msg("listing plugin sources after a change of lib/go.mod's packages")
	}
	var names []string
	for _, src := range found {
		if src.Kind != KindPrebuilt && l.pipe.DeclaredIn(src) == lib {
			names = append(names, src.Name)
			l.notify(Event{Kind: EventSourceChanged, Plugin: src.Name})
		}
	}
	for _, name := range names {
		l.refresh(name)
	}
}

// staleMiddleware warns that loaded middleware e needs a restart when
// what changed (cause, for the log) is part of its build: its key, which
// covers its sources, the files they embed and the packages of its
// module it imports, is no longer the loaded version's. concerns (nil:
// any) picks the sources the change can concern. It warns once per key,
// not again for a change that is not part of e's build.
func (l *Loader) staleMiddleware(e *entry, concerns func(Source) bool, cause string) {
	cur := e.cur.Load()
	if cur == nil {
		return
	}
	src, err := l.pipe.Find(e.name)
	if err != nil || src.Kind == KindPrebuilt || (concerns != nil && !concerns(src)) {
		return
	}
	k, err := l.pipe.Key(src)
	if err != nil {
		l.log.Warn().Str("plugin", e.name).Err(err).Msg("middleware: reading its source after a change")
		return
	}
	l.pipe.Unplan(k) // a middleware is built again only by a restart
	e.mu.Lock()
	stale := k != cur.key && k != e.seen
	e.seen = k
	e.mu.Unlock()
	if stale {
		l.log.Warn().Str("plugin", e.name).Str("changed", cause).Msg(middlewareRestart)
	}
}

// middlewareFilesChanged warns about each loaded middleware whose build
// a file in SRC/middlewares that is no middleware's source is part of
// (see staleMiddleware).
func (l *Loader) middlewareFilesChanged() {
	if l.ctx.Err() != nil {
		return
	}
	for _, e := range l.entries() {
		if _, ok := build.MiddlewareFile(e.name); ok {
			l.staleMiddleware(e, nil, "a file it embeds")
		}
	}
}

// middlewareRestart is the warning for a change to loaded middleware.
const middlewareRestart = "middleware source changed: middleware loads once, at start; restart the server to apply the change"

// srcFilesChanged tells Notify that the source of every single-file
// plugin changed, since a file in the source directory that is no
// plugin's own did, which one may embed, and brings those requested
// before up to date: only their keys tell which embed it, and a plugin
// whose key did not change is neither built nor replaced.
func (l *Loader) srcFilesChanged() {
	if l.ctx.Err() != nil {
		return
	}
	found, _, err := l.Discover()
	if err != nil {
		l.log.Warn().Err(err).Msg("listing plugin sources after a change of a file beside them")
	}
	var names []string
	for _, src := range found {
		if src.Kind == KindFile {
			names = append(names, src.Name)
			l.notify(Event{Kind: EventSourceChanged, Plugin: src.Name})
		}
	}
	for _, name := range names {
		l.refresh(name)
	}
}

// refresh makes List look again and updates a plugin that has been
// requested before. Middleware loads once, at start: a change to a loaded
// one is only logged.
func (l *Loader) refresh(name string) {
	l.invalidate()
	if l.ctx.Err() != nil || l.lookup(name) == nil {
		return
	}
	if _, ok := build.MiddlewareFile(name); ok {
		if e := l.lookup(name); e != nil {
			l.staleMiddleware(e, nil, "its source, or a file it embeds")
		}
		return
	}
	update := func() (any, error) { return l.update(name) }
	if _, _, shared := l.flight.Do(name, update); shared {
		// Joined an update that started before this change: it may have
		// read the source before it; look again (cheap if it did not).
		_, _, _ = l.flight.Do(name, update)
	}
}
