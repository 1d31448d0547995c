package server

import "github.com/plugind/plugind/loader"

// Option changes what New builds.
type Option func(*options)

type options struct {
	onEvent func(loader.Event)
}

// OnPluginEvent has the server call f with every loader event (built,
// build_failed, loaded, reloaded, load_failed, removed, source_changed),
// after its own handling (metrics and the bus; a reload of a plugin that
// runs in a process for source_changed). f runs on the loader's goroutines and must
// not block. plugind dev prints a line per rebuild with it.
func OnPluginEvent(f func(loader.Event)) Option {
	return func(o *options) { o.onEvent = f }
}

// Plugins describes the plugins the server knows, as /_PLUGINS does.
func (s *Server) Plugins() []loader.Info { return s.loader.List() }
