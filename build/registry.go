package build

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/semver"
)

// Registry records the module versions loaded into one process. Go
// allows one version of each package per process, across all plugins:
// measured, a plugin built with github.com/google/uuid v1.5.0 does not
// open once another plugin loaded v1.6.0 ("plugin was built with a
// different version of package"). So the registry is checked before
// every plugin.Open, and builds are pinned to what it holds where a
// plugin's go.mod allows. Loaded code is never unloaded, so neither is
// an entry. The server's own modules are not recorded: they are the
// host's, compared by Compatible. A Registry is safe for concurrent use.
type Registry struct {
	host map[string]string // modules the server links: not recorded

	mu     sync.Mutex // guards loaded
	loaded map[string]Loaded
}

// Loaded is a module version loaded into the process.
type Loaded struct {
	Version string // as build information shows it: "v1.6.0", or with " => replacement"
	Plugin  string // the plugin that loaded it first
	sums    []string
}

// NewRegistry returns an empty Registry that leaves host's modules alone
// (path -> version, as HostBuild.Deps).
func NewRegistry(host map[string]string) *Registry {
	return &Registry{host: host, loaded: make(map[string]Loaded)}
}

// Conflict is a module a plugin needs at a version other than the one
// another plugin (or an earlier version of itself) loaded.
type Conflict struct {
	Module string
	Want   string // the plugin's version
	Loaded Loaded
}

func (c Conflict) String() string {
	return fmt.Sprintf("%s %s (plugin %q loaded %s)", c.Module, shownVersion(c.Want), c.Loaded.Plugin, shownVersion(c.Loaded.Version))
}

// Check compares an artifact's modules (path -> version, as build
// information shows them) with what is loaded.
func (r *Registry) Check(deps map[string]string) []Conflict {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Conflict
	for _, p := range slices.Sorted(maps.Keys(deps)) {
		if l, ok := r.loaded[p]; ok && l.Version != deps[p] {
			out = append(out, Conflict{Module: p, Want: deps[p], Loaded: l})
		}
	}
	return out
}

// Add records deps as loaded by plugin, with the go.sum lines known for
// them (sums may hold lines of other modules too). Modules the server
// links, and modules recorded before, are left as they are.
func (r *Registry) Add(plugin string, deps map[string]string, sums []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, v := range deps {
		if _, ok := r.host[p]; ok {
			continue
		}
		if _, ok := r.loaded[p]; ok {
			continue
		}
		var own []string
		for _, s := range sums {
			if f := strings.Fields(s); len(f) == 3 && f[0] == p && strings.TrimSuffix(f[1], "/go.mod") == versionOf(v) {
				own = append(own, s)
			}
		}
		r.loaded[p] = Loaded{Version: v, Plugin: plugin, sums: own}
	}
}

// Lookup returns the loaded version of module path.
func (r *Registry) Lookup(path string) (Loaded, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.loaded[path]
	return l, ok
}

// Modules lists every loaded module, by path.
func (r *Registry) Modules() map[string]Loaded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.loaded)
}

// versionOf is the module version in a build-information version string,
// without a replacement.
func versionOf(v string) string {
	version, _, _ := strings.Cut(v, " => ")
	return version
}

// newer reports whether version a is above b.
func newer(a, b string) bool { return semver.Compare(a, b) > 0 }
