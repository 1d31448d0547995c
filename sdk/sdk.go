// Package sdk is the package plugins may import to talk to plugind: the
// request's route variables, the plugin's settings and secrets, and a
// logger that carries the plugin's name and the request id, all from the
// request's context.
//
//	func GETHelloHandler(w http.ResponseWriter, r *http.Request) {
//		greeting := sdk.Settings(r.Context()).String("greeting", "hello")
//		sdk.Logger(r.Context()).Info().Str("greeting", greeting).Msg("greeting")
//		fmt.Fprintf(w, "%s, %s", greeting, sdk.Vars(r.Context())["func"])
//	}
//
// # Stability and rebuilding
//
// A plugin shares this package with the server that loads it: Go opens a
// plugin only if every package both contain is byte for byte the same
// build. A plugin that imports sdk must therefore be built against the
// server's own copy. plugind does this itself: the content of this package
// is part of every artifact's cache key and of the server's build identity
// (Fingerprint), so a server with a changed sdk rebuilds its plugins
// instead of failing to open them. Plugins should import sdk and the
// standard library, nothing else of plugind's.
//
// The API here only grows: functions are not removed or changed.
package sdk

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Env is what plugind tells a plugin about itself and the current
// request. The server builds it; plugins read it through the functions
// of this package.
type Env struct {
	Plugin    string // the plugin's name
	RequestID string // "" outside a request (Init, Close)
	// Vars are the route variables, "file" and "func". When Vars is nil,
	// Vars(ctx) makes them from File and Func, a new map for each call.
	Vars     map[string]string
	File     string            // the route's plugin file, for Vars
	Func     string            // the route's function, for Vars
	Settings map[string]any    // [plugin.<name>.settings]; read-only
	Secrets  map[string]string // never logged or listed; read-only
	Log      zerolog.Logger    // carries the plugin's name
	Bus      Bus               // nil outside plugind
	Tasks    Tasks             // nil outside plugind
}

// EnvKey is the context key of the Env: a context carries env when its
// Value(EnvKey{}) is env, an *Env. NewContext makes one; a server whose
// request contexts are of its own type answers the key itself, without
// a context (and a request copy) more per request. For the server.
type EnvKey struct{}

// NewContext returns ctx carrying env. For the server.
func NewContext(ctx context.Context, env *Env) context.Context {
	return context.WithValue(ctx, EnvKey{}, env)
}

func envFrom(ctx context.Context) *Env {
	if env, ok := ctx.Value(EnvKey{}).(*Env); ok && env != nil {
		return env
	}
	return &Env{Log: zerolog.Nop()}
}

// Plugin is the name of the plugin ctx belongs to.
func Plugin(ctx context.Context) string { return envFrom(ctx).Plugin }

// RequestID is the id of the current request, as in the access log and
// the X-Request-Id response header.
func RequestID(ctx context.Context) string { return envFrom(ctx).RequestID }

// Vars are the request's route variables ("file" and "func"); nil
// outside a request. The map may be new for each call: write to it only
// if the writes need not be seen by a later call.
func Vars(ctx context.Context) map[string]string {
	env := envFrom(ctx)
	if env.Vars != nil || env.File == "" && env.Func == "" {
		return env.Vars
	}
	return map[string]string{"file": env.File, "func": env.Func}
}

// Secret returns one of the plugin's secrets (PREST_PLUGIN_<NAME>_<KEY>
// or the secrets file). Never log it.
func Secret(ctx context.Context, key string) (string, bool) {
	v, ok := envFrom(ctx).Secrets[strings.ToLower(key)]
	return v, ok
}

// Logger is a logger whose events carry the plugin's name and, during a
// request, its id.
func Logger(ctx context.Context) *zerolog.Logger {
	env := envFrom(ctx)
	l := env.Log
	if env.RequestID != "" {
		l = l.With().Str("request_id", env.RequestID).Logger()
	}
	return &l
}

// Settings are the plugin's settings: the [plugin.<name>.settings] table
// of the configuration, JSON-like values (string, bool, int64, float64,
// []any, map[string]any).
func Settings(ctx context.Context) Values { return Values(envFrom(ctx).Settings) }

// Values is a settings table with typed getters that fall back to a
// default when the key is missing or of another type.
type Values map[string]any

// String returns the string at key, or def.
func (v Values) String(key, def string) string {
	if s, ok := v[key].(string); ok {
		return s
	}
	return def
}

// Int returns the integer at key, or def.
func (v Values) Int(key string, def int) int {
	switch n := v[key].(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		if n == float64(int(n)) {
			return int(n)
		}
	case string:
		if i, err := strconv.Atoi(n); err == nil {
			return i
		}
	}
	return def
}

// Bool returns the boolean at key, or def.
func (v Values) Bool(key string, def bool) bool {
	switch b := v[key].(type) {
	case bool:
		return b
	case string:
		if p, err := strconv.ParseBool(b); err == nil {
			return p
		}
	}
	return def
}

// Duration returns the duration at key ("1.5s"), or def.
func (v Values) Duration(key string, def time.Duration) time.Duration {
	if s, ok := v[key].(string); ok {
		if d, err := time.ParseDuration(s); err == nil {
			return d
		}
	}
	return def
}

// Strings returns the list of strings at key, or def.
func (v Values) Strings(key string, def []string) []string {
	list, ok := v[key].([]any)
	if !ok {
		return def
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return def
		}
		out = append(out, s)
	}
	return out
}

//go:embed *.go
var sources embed.FS

// Fingerprint identifies this package's source. The server puts it in
// its build identity, so plugins are rebuilt when sdk changes.
var Fingerprint = sync.OnceValue(func() string {
	h := sha256.New()
	names, _ := fs.Glob(sources, "*.go")
	slices.Sort(names)
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		data, _ := sources.ReadFile(n)
		h.Write([]byte(n + "\n"))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
})
