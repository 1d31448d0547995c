// Package admin serves plugind's operator page, /_ADMIN/: every plugin
// with its state, handlers (with a curl line to copy), loaded versions and
// the memory they hold, its last builds with the compiler's diagnostics and
// the source lines they name, its reload history and its recent request
// rate, error rate and latency as small charts; the tasks running; and a
// live tail of server events.
//
// The page is rendered on the server with html/template from embedded
// files, and readable without JavaScript. A small embedded script keeps
// it current: it follows the server events at /_ADMIN/events (Server-Sent
// Events) and fetches the plugins fragment, /_ADMIN/plugins, when a
// plugin changes and every few seconds. Every response carries its own
// Content-Security-Policy, with a fresh nonce for the page's one style
// and one script; nothing is loaded from elsewhere.
//
// The package serves what it is given; access control is the router's
// (the page is an operator route).
package admin

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/bus"
	"github.com/plugind/plugind/internal/reqstats"
	"github.com/plugind/plugind/internal/sse"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/tasks"
)

// Prefix is the path the page is served under.
const Prefix = "/_ADMIN/"

// Plugins describes the plugins; *loader.Loader implements it.
type Plugins interface {
	List() []loader.Info
}

// Stats reports a plugin's recent requests; *reqstats.Recorder implements
// it.
type Stats interface {
	Window(plugin string) reqstats.Window
}

// TaskLister lists the tasks queued or running.
type TaskLister interface {
	Active() []tasks.Task
}

// Options are what the page shows. Only Plugins is required: without the
// others their sections say what is missing.
type Options struct {
	Plugins Plugins
	// History is the plugins' builds and lifecycle events.
	History *History
	// Stats is their recent requests.
	Stats Stats
	// Events, if set, feeds the live tail of server events, under its
	// limits (bus.maxstreams, shared with /_EVENTS; bus.writetimeout) and
	// until the server starts shutting down.
	Events *sse.Streams
	// Tasks, if set, lists the tasks queued and running.
	Tasks TaskLister
	// APIKey says that requests need credentials: curl lines then carry
	// -H "X-API-Key: $PLUGIND_API_KEY".
	APIKey bool
	Log    zerolog.Logger
}

//go:embed assets
var assets embed.FS

// templates are parsed once; they cannot fail but by a change to the
// embedded files, which the tests would see.
var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"dur":   fmtDur,
	"bytes": fmtBytes,
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"stamp": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) },
	"rate":  func(f float64) string { return fmt.Sprintf("%.2f/s", f) },
}).ParseFS(assets, "assets/*.html"))

// style and script are inlined into the page under its nonce.
var style, script = mustRead("assets/admin.css"), mustRead("assets/admin.js")

func mustRead(name string) string {
	b, err := assets.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return string(b)
}

// handler serves the page.
type handler struct {
	opts   Options
	events http.Handler // nil without Options.Events
}

// New returns the handler of everything under Prefix; mount it at Prefix
// (and at "/_ADMIN", which it redirects).
func New(opts Options) http.Handler {
	if opts.Plugins == nil {
		panic("admin.New: Options.Plugins is required")
	}
	h := &handler{opts: opts}
	if opts.Events != nil {
		h.events = opts.Events.Handler("admin", serverEvent)
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	switch strings.TrimPrefix(r.URL.Path, Prefix) {
	case "":
		h.page(w, r)
	case "plugins":
		h.fragment(w, r)
	case "events":
		if h.events == nil {
			writeError(w, http.StatusNotFound, "the event stream is off")
			return
		}
		h.events.ServeHTTP(w, r)
	default:
		writeError(w, http.StatusNotFound, "not found")
	}
}

// writeError answers an error as every route of the server does: a JSON
// object {"error": msg}, encoded by encoding/json.
func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// nonce returns a fresh CSP nonce, in the URL alphabet: html/template
// would write the standard one's '+' as an entity in the attribute.
func nonce() string {
	var b [18]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// csp is the policy of a page with nonce: its own style and script only;
// fetches and the event stream to this origin.
func csp(nonce string) string {
	return "default-src 'none'; style-src 'nonce-" + nonce + "'; script-src 'nonce-" + nonce + "'; " +
		"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// pageData is what the templates render.
type pageData struct {
	Nonce   string
	Style   template.CSS
	Script  template.JS
	Now     time.Time
	Plugins []pluginView
	Recent  []Event
	Tasks   []tasks.Task
	HasTask bool // a task lister is configured
	Live    bool // the event stream is on
	Window  string
}

// pluginView is one plugin's part of the page.
type pluginView struct {
	loader.Info
	Calls     []call
	LastBuild *Build
	// Superseded: the last build failed, but a version was loaded since
	// without a build (the source was put back to one loaded before, or
	// in the artifact cache), and is serving.
	Superseded bool
	Builds     []Build
	Events     []Event
	HasStats   bool
	Stats      reqstats.Window
	Charts     []chart
}

// call is a handler and a curl line that calls it.
type call struct {
	loader.HandlerInfo
	Curl string
}

func (h *handler) data(r *http.Request) pageData {
	d := pageData{
		Now:     time.Now(),
		Live:    h.opts.Events != nil,
		HasTask: h.opts.Tasks != nil,
		Window:  (reqstats.Buckets * reqstats.Bucket).String(),
	}
	base := baseURL(r)
	for _, info := range h.opts.Plugins.List() {
		v := pluginView{Info: info}
		for _, hi := range info.Handlers {
			v.Calls = append(v.Calls, call{HandlerInfo: hi, Curl: curl(base, info.Name, hi, h.opts.APIKey)})
		}
		if h.opts.History != nil {
			v.Builds = h.opts.History.Builds(info.Name)
			v.Events = h.opts.History.Events(info.Name)
			if len(v.Builds) > 0 {
				v.LastBuild, v.Builds = &v.Builds[0], v.Builds[1:]
				for _, e := range v.Events {
					if !v.LastBuild.OK && (e.Kind == loader.EventLoaded || e.Kind == loader.EventReloaded) && e.At.After(v.LastBuild.Finished) {
						v.Superseded = true
					}
				}
			}
		}
		if h.opts.Stats != nil {
			v.HasStats = true
			v.Stats = h.opts.Stats.Window(info.Name)
			v.Charts = charts(v.Stats)
		}
		d.Plugins = append(d.Plugins, v)
	}
	if h.opts.History != nil {
		d.Recent = h.opts.History.Recent()
	}
	if h.opts.Tasks != nil {
		d.Tasks = h.opts.Tasks.Active()
	}
	return d
}

// page serves the whole page.
func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	d := h.data(r)
	d.Nonce, d.Style, d.Script = nonce(), template.CSS(style), template.JS(script)
	w.Header().Set("Content-Security-Policy", csp(d.Nonce))
	h.render(w, r, "page", d)
}

// fragment serves the live part of the page, for the script to swap in.
func (h *handler) fragment(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.render(w, r, "live", h.data(r))
}

// render executes template name into a buffer first, so that a failure
// is a clean 500 rather than half a page.
func (h *handler) render(w http.ResponseWriter, r *http.Request, name string, d pageData) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, d); err != nil {
		h.opts.Log.Error().Err(err).Str("template", name).Msg("admin page failed to render")
		writeError(w, http.StatusInternalServerError, "the admin page failed to render")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(buf.Bytes())
}

// serverEventPrefix selects, of the bus traffic, the server's own events.
const serverEventPrefix = "plugind."

// serverEvent is the format of the page's event stream: the server's
// own events, each a JSON object {time, name, payload}.
func serverEvent(m bus.Message) (event string, data []byte, ok bool) {
	if !strings.HasPrefix(m.Name, serverEventPrefix) {
		return "", nil, false
	}
	var payload json.RawMessage
	if json.Valid(m.Payload) {
		payload = m.Payload
	}
	data, err := json.Marshal(struct {
		Time    time.Time       `json:"time"`
		Name    string          `json:"name"`
		Payload json.RawMessage `json:"payload,omitempty"`
	}{time.Now().UTC(), m.Name, payload})
	return "", data, err == nil
}

// baseURL is the scheme and host the client reached, for curl lines; a
// Host header with anything but the characters of a host and port is
// replaced, as it will be pasted into a shell.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	if host == "" || strings.ContainsFunc(host, func(c rune) bool {
		return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune(".-:[]", c))
	}) {
		host = "localhost"
	}
	return scheme + "://" + host
}

// curl is a shell command that calls handler hi of plugin. Plugin and
// function names are letters, digits, '_' and '-': they need no quoting.
func curl(base, plugin string, hi loader.HandlerInfo, apiKey bool) string {
	var b strings.Builder
	b.WriteString("curl ")
	switch hi.Method {
	case http.MethodGet:
	case http.MethodHead:
		b.WriteString("-I ")
	default:
		b.WriteString("-X " + hi.Method + " ")
	}
	if apiKey {
		b.WriteString(`-H "X-API-Key: $PLUGIND_API_KEY" `)
	}
	b.WriteString("'" + base + "/_PLUGIN/" + plugin + "/" + hi.Func + "'")
	return b.String()
}
