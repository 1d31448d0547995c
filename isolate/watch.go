package isolate

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/plugind/plugind/loader"
)

// debounce is how long a plugin's sources must be quiet before it is
// reloaded: editors save in several steps.
const debounce = 150 * time.Millisecond

// Watch reloads an isolated plugin that has been called when its source
// in dir changes (see Reload); the processes serving it keep serving
// until the new ones are healthy, and keep serving if they fail. It
// returns once watching has started and stops at Close.
func (m *Manager) Watch(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return err
	}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if e.IsDir() && loader.ValidName(e.Name()) {
				_ = w.Add(filepath.Join(dir, e.Name()))
			}
		}
	}
	go m.watch(w, dir)
	return nil
}

func (m *Manager) watch(w *fsnotify.Watcher, dir string) {
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
		case <-m.ctx.Done():
			return
		case err := <-w.Errors:
			m.log.Warn().Err(err).Msg("watching isolated plugin sources")
		case ev := <-w.Events:
			rel, err := filepath.Rel(dir, ev.Name)
			if err != nil || strings.HasPrefix(rel, "..") {
				continue
			}
			first, _, nested := strings.Cut(rel, string(filepath.Separator))
			name := strings.TrimSuffix(first, ".go")
			if !loader.ValidName(name) || (!nested && name == first && !isDir(ev.Name)) {
				continue
			}
			if !nested && isDir(ev.Name) && ev.Has(fsnotify.Create) {
				_ = w.Add(ev.Name)
			}
			mu.Lock()
			if t, ok := timers[name]; ok {
				t.Reset(debounce)
			} else {
				timers[name] = time.AfterFunc(debounce, func() {
					if m.ctx.Err() == nil {
						_ = m.Reload(m.ctx, name) // logged by reload
					}
				})
			}
			mu.Unlock()
		}
	}
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
