package loader_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/loader"
)

// through serves a request through middleware mw, on loopback, in front
// of a handler answering "next", and returns the X-Form headers the
// middleware set and the body.
func through(t *testing.T, mw func(http.Handler) http.Handler) (forms []string, body string) {
	t.Helper()
	srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "next")
	})))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Header.Values("X-Form"), string(b)
}

// TestMiddlewareForms loads every shape of middleware and constructor
// from src/middlewares/forms.go and applies it; refused shapes are
// errors naming the plugin, the symbol and the type found.
func TestMiddlewareForms(t *testing.T) {
	pp := plugintest.PluginPath(t)
	plugintest.Middleware(t, pp, "forms", "forms")
	l, logs := newLoader(t, pp)
	ctx := context.Background()
	accepted := []struct{ fn, form string }{
		{"Negroni", "negroni"},         // func() Handler: an interface with negroni's ServeHTTP
		{"Mux", "mux"},                 // func() mux.MiddlewareFunc
		{"Struct", "struct"},           // a value with a Middleware method
		{"Chain", "chain"},             // a named func type of mux's shape
		{"Step", "step"},               // a named func type of negroni's shape
		{"Direct", "direct"},           // func(w, r, next): prestd's loader's
		{"Wrap", "wrap"},               // func(http.Handler) http.Handler
		{"Ctor", "ctor"},               // func() func(http.Handler) http.Handler
		{"NegroniCtor", "negronictor"}, // func() func(w, r, next)
	}
	for _, tt := range accepted {
		t.Run(tt.fn, func(t *testing.T) {
			mw, err := l.Middleware(ctx, "forms", tt.fn)
			if err != nil {
				t.Fatal(err)
			}
			if forms, body := through(t, mw); len(forms) != 1 || forms[0] != tt.form || body != "next" {
				t.Errorf("X-Form %q, body %q; want %q and the next handler's body", forms, body, tt.form)
			}
		})
	}
	const prefix = `plugin "middlewares/forms": `
	refused := []struct {
		fn   string
		kind error
		want string
	}{
		{"Nil", loader.ErrSignature, prefix + "NilMiddlewareLoad (func() main.Handler) returned nil"},
		{"NilFunc", loader.ErrSignature, prefix + "NilFuncMiddlewareLoad (func() main.HandlerFunc) returned nil"},
		{"Panic", loader.ErrPanic, prefix + "PanicMiddlewareLoad panicked: panic: constructor exploded"},
		{"String", loader.ErrSignature, prefix + "StringMiddlewareLoad (func() string) returned a string; want func(http.ResponseWriter"},
		{"Plain", loader.ErrSignature, prefix + "PlainMiddlewareLoad (func() http.Handler) returned a http.HandlerFunc; want"},
		{"Two", loader.ErrSignature, prefix + "TwoMiddlewareLoad has type func() (main.Handler, error); want"},
		{"Arg", loader.ErrSignature, prefix + "ArgMiddlewareLoad has type func(string) main.Handler; want"},
		{"Var", loader.ErrSignature, prefix + "VarMiddlewareLoad has type main.HandlerFunc; want"},
		{"Missing", loader.ErrNoHandler, `plugin "middlewares/forms" has no MissingMiddlewareLoad`},
	}
	for _, tt := range refused {
		t.Run(tt.fn, func(t *testing.T) {
			mw, err := l.Middleware(ctx, "forms", tt.fn)
			if mw != nil || !errors.Is(err, tt.kind) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant %v starting %q", err, tt.kind, tt.want)
			}
		})
	}

	// A panic while wrapping the route, at start-up, does not escape: the
	// route's requests panic with it, which the server answers 500.
	mw, err := l.Middleware(ctx, "forms", "WrapPanic")
	if err != nil {
		t.Fatal(err)
	}
	h := mw(http.NotFoundHandler())
	func() {
		defer func() {
			if p := recover(); p != "wrapping exploded" {
				t.Errorf("a request through the route panicked with %v; want the middleware's panic", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	if len(logs.Events(map[string]any{"plugin": "middlewares/forms", "symbol": "WrapPanicMiddlewareLoad", "level": "error"})) != 1 {
		t.Errorf("the panic while wrapping was not logged once:\n%s", logs)
	}
}

// TestMiddlewareLocations: middleware FILE is src/middlewares/FILE.go,
// or prestd's built middlewares/FILE.so; apart from an endpoint plugin
// FILE, which serves as middleware only if neither exists, with one
// warning that this is deprecated.
func TestMiddlewareLocations(t *testing.T) {
	ctx := context.Background()
	deprecated := func(logs *plugintest.Log, plugin string) int {
		n := 0
		for _, ev := range logs.Events(map[string]any{"plugin": plugin, "level": "warn"}) {
			if msg, _ := ev["message"].(string); strings.Contains(msg, "deprecated") {
				n++
			}
		}
		return n
	}

	t.Run("src/middlewares beside an endpoint plugin of the same name", func(t *testing.T) {
		pp := plugintest.PluginPath(t, "hello")
		plugintest.Middleware(t, pp, "forms", "hello")
		l, logs := newLoader(t, pp)
		mw, err := l.Middleware(ctx, "hello", "Negroni")
		if err != nil {
			t.Fatal(err)
		}
		if forms, _ := through(t, mw); len(forms) != 1 || forms[0] != "negroni" {
			t.Errorf("X-Form %q", forms)
		}
		if _, err := l.Middleware(ctx, "hello", "Hello"); !errors.Is(err, loader.ErrNoHandler) {
			t.Errorf("the endpoint plugin hello served as middleware: %v", err)
		}
		if body, err := call(t, l, "hello", "Hello"); err != nil || !strings.Contains(body, "Hello") {
			t.Errorf("endpoint hello = %q, %v", body, err)
		}
		if _, err := l.Handler(ctx, "middlewares", "Negroni", "GET"); !errors.Is(err, loader.ErrNotFound) {
			t.Errorf("src/middlewares as a plugin: %v, want ErrNotFound", err)
		}
		endpoint, _, err1 := l.Pipeline().Cached("hello")
		middleware, _, err2 := l.Pipeline().Cached(build.MiddlewareName("hello"))
		if err1 != nil || err2 != nil || endpoint == middleware {
			t.Errorf("keys: endpoint %s (%v), middleware %s (%v); want two", endpoint, err1, middleware, err2)
		}
		for _, i := range l.List() {
			if i.Name != "hello" {
				t.Errorf("listed %q", i.Name)
			}
		}
		if n := deprecated(logs, "hello"); n != 0 {
			t.Errorf("%d deprecation warnings", n)
		}
	})

	t.Run("src, deprecated", func(t *testing.T) {
		pp := plugintest.PluginPath(t, "middleware")
		l, logs := newLoader(t, pp)
		for _, fn := range []string{"First", "Second"} {
			if _, err := l.Middleware(ctx, "middleware", fn); err != nil {
				t.Fatal(err)
			}
		}
		if n := deprecated(logs, "middleware"); n != 1 {
			t.Errorf("%d deprecation warnings, want 1:\n%s", n, logs)
		}
	})

	t.Run("not found", func(t *testing.T) {
		l, _ := newLoader(t, plugintest.PluginPath(t, "hello"))
		_, err := l.Middleware(ctx, "nosuch", "X")
		if want := `middleware "nosuch" not found: put it in src/middlewares/nosuch.go`; !errors.Is(err, loader.ErrNotFound) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("err = %v, want ErrNotFound starting %q", err, want)
		}
	})

	t.Run("prebuilt middlewares/NAME.so", func(t *testing.T) {
		// prestd's build: go build -o lib/middlewares/NAME.so. Made here by
		// a pipeline over another tree, copied where prestd puts it, with
		// no source beside it.
		other := plugintest.PluginPath(t)
		src := plugintest.Middleware(t, other, "forms", "solib")
		data, _ := os.ReadFile(src)
		plugintest.WriteFile(t, filepath.Dir(src), "solib.go", plugintest.Own(t, string(data))) // opened once per process
		lo, _ := newLoader(t, other)
		p := lo.Pipeline()
		res, err := p.Build(ctx, build.MiddlewareName("solib"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := p.Find(build.MiddlewareName("solib"))
		if err != nil {
			t.Fatal(err)
		}
		lib, err := os.ReadFile(p.Path(s, res.Key))
		if err != nil {
			t.Fatal(err)
		}
		pp := plugintest.PluginPath(t)
		if err := os.MkdirAll(filepath.Join(pp, "middlewares"), 0o755); err != nil {
			t.Fatal(err)
		}
		plugintest.WriteFile(t, filepath.Join(pp, "middlewares"), "solib.so", string(lib))

		l, _ := newLoader(t, pp)
		if s, err := l.Pipeline().Find(build.MiddlewareName("solib")); err != nil || s.Kind != loader.KindPrebuilt {
			t.Fatalf("Find = %+v, %v; want the prebuilt library", s, err)
		}
		mw, err := l.Middleware(ctx, "solib", "Negroni")
		if err != nil {
			t.Fatal(err)
		}
		if forms, _ := through(t, mw); len(forms) != 1 || forms[0] != "negroni" {
			t.Errorf("X-Form %q", forms)
		}
	})
}

// TestMiddlewareEditNeedsRestart: middleware loads once, at start. With
// reload on, an edit to a loaded middleware's source is logged (restart
// to apply it) and builds nothing.
func TestMiddlewareEditNeedsRestart(t *testing.T) {
	pp := plugintest.PluginPath(t, "hello")
	src := plugintest.Middleware(t, pp, "forms", "hello")
	l, logs := newLoaderWith(t, pp, func(_ *build.Options, o *loader.Options) { o.Reload = true })
	if _, err := l.Middleware(context.Background(), "hello", "Negroni"); err != nil {
		t.Fatal(err)
	}
	if err := l.Watch(); err != nil {
		t.Fatal(err)
	}
	before := builds(logs, "middlewares/hello")
	data, _ := os.ReadFile(src)
	plugintest.WriteFile(t, filepath.Dir(src), "hello.go", string(data)+"\n// edited\n")
	eventually(t, "the restart warning", func() bool {
		return len(logs.Events(map[string]any{"plugin": "middlewares/hello", "message": "middleware source changed: middleware loads once, at start; restart the server to apply the change"})) == 1
	})
	if n := builds(logs, "middlewares/hello"); n != before {
		t.Errorf("%d builds after the edit, want %d", n, before)
	}
}
