package loader

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"slices"
	"strings"
	"time"

	"github.com/plugind/plugind/build"
)

// State is where a plugin is in its life.
type State string

const (
	StateUnbuilt  State = "unbuilt"  // never requested
	StateBuilding State = "building" // first build in progress
	StateReady    State = "ready"    // serving (perhaps while a new version builds)
	StateFailed   State = "failed"   // its source does not build or load
	StateBuilt    State = "built"    // in the cache, not loaded (plugind list)
	// StateRemoved: its source is gone and it no longer serves; the
	// versions it loaded before stay in memory, since Go cannot unload
	// a plugin, and are listed with it. A plugin whose source went
	// before it loaded anything is not listed at all.
	StateRemoved State = "removed"
)

// HandlerInfo describes one exported handler, read from the source.
type HandlerInfo struct {
	Method    string `json:"method"`
	Func      string `json:"func"`
	Symbol    string `json:"symbol"`
	ABI       ABI    `json:"abi"` // "legacy", "standard" or "unsupported"
	Signature string `json:"signature"`
}

// VersionInfo describes one loaded version of a plugin.
type VersionInfo struct {
	Hash          string        `json:"hash"`
	LoadedAt      time.Time     `json:"loaded_at"`
	BuildDuration time.Duration `json:"build_duration_ns"` // 0: from the cache
	Bytes         int64         `json:"bytes"`
	Current       bool          `json:"current"`
	// Modules are the modules the version carries beyond the server's
	// (its go.mod's, see Dependencies in the README): path -> version.
	Modules map[string]string `json:"modules,omitempty"`
}

// Info describes a plugin for listings. Its fields hold no server path
// and no secret of the server's. LastErrorDetail, and Health other than
// "ok", hold what the plugin itself wrote, which may be anything: show
// those to operators (or in debug mode) only.
type Info struct {
	Name     string        `json:"name"`
	Kind     Kind          `json:"kind"`
	State    State         `json:"state"`
	Building bool          `json:"building"`
	Hash     string        `json:"hash,omitempty"` // content address of the current version
	Handlers []HandlerInfo `json:"handlers"`
	// LastError is the last failure's client-safe message (Error.Msg);
	// LastErrorDetail what the plugin wrote about it (Error.Detail).
	LastError       string        `json:"last_error,omitempty"`
	LastErrorDetail string        `json:"last_error_detail,omitempty"`
	FailedAt        *time.Time    `json:"failed_at,omitempty"`
	Versions        []VersionInfo `json:"versions"`
	Bytes           int64         `json:"bytes"` // held by all its loaded versions
	// Health is the current version's Health hook result (see
	// Loader.Health): "ok", that it did not answer in time, or the
	// error it returned, which is the plugin's text (operators only;
	// others may be told "failing"); "" when it has none.
	Health string `json:"health,omitempty"`
}

// List describes every plugin: those in the source directory and those
// loaded, sorted by name; not middleware (SRC/middlewares). What it reads
// from disk (the sources and the handlers they declare) is cached: the
// loader looks again when the watcher reports a change, when a request
// finds a plugin's source changed, added or gone, or, with the watcher
// off, at most every listTTL (2 s) (with it on, every listTTLWatching, a
// minute, for events it may have missed). Prebuilt libraries are not
// watched: they are noticed by the TTL or a request. The loaded state is
// read live, and Health hooks run on every call. ListGeneration tells
// whether anything changed since.
func (l *Loader) List() []Info {
	scanned := l.sources()
	found := scanned.sources
	byName := make(map[string]*Info)
	var names []string
	add := func(name string, kind Kind) *Info {
		if i, ok := byName[name]; ok {
			return i
		}
		i := &Info{Name: name, Kind: kind, State: StateUnbuilt, Versions: []VersionInfo{}}
		byName[name] = i
		names = append(names, name)
		return i
	}
	for _, s := range found {
		add(s.Name, s.Kind).Handlers = slices.Clone(scanned.handlers[s.Name])
	}
	inSource := len(names) // names[:inSource] have a source
	type healthCheck struct {
		info *Info
		name string
		v    *version
	}
	var checks []healthCheck
	for _, e := range l.entries() {
		if _, ok := build.MiddlewareFile(e.name); ok {
			continue // middleware, not a plugin with routes
		}
		e.mu.Lock()
		cur := e.cur.Load()
		gone := cur == nil && !e.building && !slices.Contains(names[:inSource], e.name)
		if gone && len(e.versions) == 0 {
			e.mu.Unlock()
			continue // nothing of it is left: it was never loaded
		}
		i := add(e.name, e.kind)
		i.Building = e.building
		switch {
		case gone:
			i.State = StateRemoved
		case cur != nil:
			i.State, i.Hash = StateReady, cur.key[:16]
		case e.building:
			i.State = StateBuilding
		case e.failure != nil:
			i.State = StateFailed
		}
		if f := e.failure; f != nil && !gone {
			i.LastError, i.LastErrorDetail = ErrorText(f.err)
			at := f.at
			i.FailedAt = &at
		}
		if cur != nil && cur.art.hooks.health != nil {
			checks = append(checks, healthCheck{i, e.name, cur})
		}
		for _, v := range e.versions {
			i.Versions = append(i.Versions, VersionInfo{
				Hash: v.key[:16], LoadedAt: v.loadedAt, BuildDuration: v.buildDur,
				Bytes: v.bytes, Current: v == cur, Modules: shownModules(v.art.modules),
			})
			i.Bytes += v.bytes
		}
		e.mu.Unlock()
	}
	for _, c := range checks { // plugin code: run outside the entry locks
		c.info.Health = l.health(context.Background(), c.name, c.v, 2*time.Second)
	}
	slices.Sort(names)
	out := make([]Info, len(names))
	for n, name := range names {
		out[n] = *byName[name]
	}
	return out
}

// ErrorText is the client-safe text of err, the one a plugin's endpoint
// answers with (Error.Msg), and what the plugin wrote about it
// (Error.Detail, for operators): a listing's LastError and
// LastErrorDetail, wherever the plugin runs.
func ErrorText(err error) (msg, detail string) {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Msg, e.Detail
	}
	return "internal error", ""
}

// symbolMethods are recognised at the start of handler names, longest
// first so that no method is mistaken for a prefix of another.
var symbolMethods = []string{"OPTIONS", "DELETE", "PATCH", "POST", "HEAD", "PUT", "GET"}

// SourceHandlers lists the handlers src declares, read from its files
// with go/parser: no build needed. Unreadable files are skipped.
func SourceHandlers(src Source) []HandlerInfo {
	fset := token.NewFileSet()
	var out []HandlerInfo
	for _, file := range src.Files {
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			continue
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || !strings.HasSuffix(fd.Name.Name, "Handler") {
				continue
			}
			for _, m := range symbolMethods {
				fn, ok := strings.CutPrefix(strings.TrimSuffix(fd.Name.Name, "Handler"), m)
				if !ok || fn == "" {
					continue
				}
				out = append(out, HandlerInfo{Method: m, Func: fn, Symbol: fd.Name.Name, ABI: abiOf(fd.Type), Signature: types.ExprString(fd.Type)})
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b HandlerInfo) int { return strings.Compare(a.Symbol, b.Symbol) })
	return out
}

// ABIUnsupported marks, in listings, a handler whose signature no ABI
// accepts.
const ABIUnsupported ABI = "unsupported"

// abiOf classifies a handler's signature as written in its source. The
// loader's type switch on the loaded symbol is the authority; this reads
// "http" as the net/http import name.
func abiOf(ft *ast.FuncType) ABI {
	params, results := fieldTypes(ft.Params), fieldTypes(ft.Results)
	switch {
	case len(params) == 0 && (slices.Equal(results, []string{"string"}) || slices.Equal(results, []string{"string", "int"})):
		return ABILegacy
	case len(results) == 0 && slices.Equal(params, []string{"http.ResponseWriter", "*http.Request"}):
		return ABIStandard
	}
	return ABIUnsupported
}

// fieldTypes lists the type of each parameter or result in fl.
func fieldTypes(fl *ast.FieldList) []string {
	if fl == nil {
		return nil
	}
	var out []string
	for _, f := range fl.List {
		t := types.ExprString(f.Type)
		for range max(1, len(f.Names)) {
			out = append(out, t)
		}
	}
	return out
}

// shownModules is mods for a listing: versions without replacement paths.
func shownModules(mods map[string]string) map[string]string {
	if len(mods) == 0 {
		return nil
	}
	out := make(map[string]string, len(mods))
	for path, v := range mods {
		out[path] = build.ShownVersion(v)
	}
	return out
}
