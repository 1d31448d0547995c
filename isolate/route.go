package isolate

import (
	"context"
	"slices"
	"strings"

	"github.com/plugind/plugind/handlers"
	"github.com/plugind/plugind/loader"
)

// Route returns Plugins that resolve the plugins isolated names through
// m and every other through inner (the in-process loader). Listings are
// inner's, with isolated plugins described by m once they have been
// called.
func Route(inner handlers.Plugins, m *Manager, isolated func(name string) bool) handlers.Plugins {
	return router{inner: inner, m: m, isolated: isolated}
}

type router struct {
	inner    handlers.Plugins
	m        *Manager
	isolated func(string) bool
}

func (r router) Resolve(ctx context.Context, name, fn, method string) (handlers.Handler, error) {
	if !r.isolated(name) {
		return r.inner.Resolve(ctx, name, fn, method)
	}
	h, err := r.m.Resolve(ctx, name, fn, method)
	if err != nil {
		return nil, err // not a typed nil in an interface
	}
	return h, nil
}

func (r router) List() []loader.Info {
	out := r.inner.List()
	for i, info := range out {
		if r.isolated(info.Name) {
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
