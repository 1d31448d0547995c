package isolate

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/handlers"
	"github.com/plugind/plugind/loader"
)

// Route returns Plugins that resolve the plugins isolated names through
// m and every other through inner (the in-process loader). Listings are
// inner's, with isolated plugins described by m once they have been
// called.
func Route(inner handlers.Plugins, m *Manager, isolated func(name string) bool) handlers.Plugins {
	return RouteAuto(inner, m, isolated, nil, zerolog.Nop())
}

// RouteAuto is Route with plugins in "auto" isolation: a plugin auto
// names resolves in-process unless it cannot be loaded there because of
// its module requirements (loader.ErrDependency: a version the server
// links, or another plugin loaded, stands in its way); then it moves to
// a process of its own, where nothing is shared, for as long as the
// server runs, and log says why. In prebuilt mode it also moves when it
// has no in-process artifact (loader.ErrNotBuilt) but m has its program:
// plugind build builds both for such a plugin, and keeps the program
// alone when its .so conflicts with another plugin's modules.
func RouteAuto(inner handlers.Plugins, m *Manager, isolated, auto func(name string) bool, log zerolog.Logger) handlers.Plugins {
	if auto == nil {
		auto = func(string) bool { return false }
	}
	return &router{inner: inner, m: m, isolated: isolated, auto: auto, log: log}
}

type router struct {
	inner    handlers.Plugins
	m        *Manager
	isolated func(string) bool
	auto     func(string) bool
	log      zerolog.Logger
	moved    sync.Map // name -> struct{}: auto plugins that run in a process
}

// inProcess reports whether plugin name runs in-process now.
func (r *router) inProcess(name string) bool {
	if r.isolated(name) {
		return false
	}
	_, moved := r.moved.Load(name)
	return !moved
}

func (r *router) Resolve(ctx context.Context, name, fn, method string) (handlers.Handler, error) {
	if r.inProcess(name) {
		h, err := r.inner.Resolve(ctx, name, fn, method)
		if err == nil || !r.auto(name) {
			return h, err
		}
		var msg string
		switch {
		case errors.Is(err, loader.ErrDependency):
			msg = "plugin cannot load in-process because of its dependencies; isolation is auto: it runs in a process of its own"
		case errors.Is(err, loader.ErrNotBuilt) && r.m.opts.Prebuilt && r.m.Built(name) == nil:
			msg = "plugin has no in-process artifact but plugind build made its executable; isolation is auto: it runs in a process of its own"
		default:
			return h, err
		}
		if _, loaded := r.moved.LoadOrStore(name, struct{}{}); !loaded {
			r.log.Warn().Str("plugin", name).Str("reason", err.Error()).Msg(msg)
		}
	}
	h, err := r.m.Resolve(ctx, name, fn, method)
	if err != nil {
		return nil, err // not a typed nil in an interface
	}
	return h, nil
}

func (r *router) List() []loader.Info {
	out := r.inner.List()
	for i, info := range out {
		if !r.inProcess(info.Name) {
			if iso, ok := r.m.Info(info.Name); ok {
				if len(iso.Handlers) == 0 {
					iso.Handlers = info.Handlers
				}
				iso.Kind = info.Kind
				out[i] = iso
			}
		}
	}
	slices.SortFunc(out, func(a, b loader.Info) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Health merges the in-process and the isolated plugins' Health results.
func Health(inproc, isolated map[string]string) map[string]string {
	if len(isolated) == 0 {
		return inproc
	}
	if inproc == nil {
		inproc = make(map[string]string, len(isolated))
	}
	for k, v := range isolated {
		inproc[k] = v
	}
	return inproc
}
