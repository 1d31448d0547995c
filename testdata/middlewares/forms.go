// forms exports middleware constructors and middleware in every shape
// plugind accepts, and some it refuses. It lives in src/middlewares.
// Each accepted one sets X-Form to its name and calls the next handler.
package main

import (
	"net/http"

	"github.com/gorilla/mux"
)

// Handler and HandlerFunc are negroni's, without the module: prestd
// documents func HelloMiddlewareLoad() negroni.Handler.
type Handler interface {
	ServeHTTP(rw http.ResponseWriter, r *http.Request, next http.HandlerFunc)
}

type HandlerFunc func(rw http.ResponseWriter, r *http.Request, next http.HandlerFunc)

func (h HandlerFunc) ServeHTTP(rw http.ResponseWriter, r *http.Request, next http.HandlerFunc) {
	h(rw, r, next)
}

func form(name string) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, next http.HandlerFunc) {
		w.Header().Add("X-Form", name)
		next(w, r)
	}
}

func wrap(name string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("X-Form", name)
			next.ServeHTTP(w, r)
		})
	}
}

// NegroniMiddlewareLoad returns an interface value: prestd's documented form.
func NegroniMiddlewareLoad() Handler { return form("negroni") }

// MuxMiddlewareLoad returns gorilla/mux's middleware type.
func MuxMiddlewareLoad() mux.MiddlewareFunc { return wrap("mux") }

// tagger is a middleware by its Middleware method alone.
type tagger struct{ name string }

func (t *tagger) Middleware(next http.Handler) http.Handler { return wrap(t.name)(next) }

// StructMiddlewareLoad returns a value with mux's Middleware method.
func StructMiddlewareLoad() *tagger { return &tagger{"struct"} }

// Chain and Step are named func types without methods.
type (
	Chain func(http.Handler) http.Handler
	Step  func(http.ResponseWriter, *http.Request, http.HandlerFunc)
)

// ChainMiddlewareLoad returns a named func type of mux's shape.
func ChainMiddlewareLoad() Chain { return Chain(wrap("chain")) }

// StepMiddlewareLoad returns a named func type of negroni's shape.
func StepMiddlewareLoad() Step { return Step(form("step")) }

// DirectMiddlewareLoad is the shape prestd's loader asserts.
func DirectMiddlewareLoad(w http.ResponseWriter, r *http.Request, next http.HandlerFunc) {
	form("direct")(w, r, next)
}

// WrapMiddlewareLoad is mux's shape itself.
func WrapMiddlewareLoad(next http.Handler) http.Handler { return wrap("wrap")(next) }

// CtorMiddlewareLoad returns mux's shape, unnamed.
func CtorMiddlewareLoad() func(http.Handler) http.Handler { return wrap("ctor") }

// NegroniCtorMiddlewareLoad returns negroni's shape, unnamed.
func NegroniCtorMiddlewareLoad() func(http.ResponseWriter, *http.Request, http.HandlerFunc) {
	return form("negronictor")
}

// Refused shapes.

func NilMiddlewareLoad() Handler { return nil }

func NilFuncMiddlewareLoad() HandlerFunc { return nil }

func PanicMiddlewareLoad() Handler { panic("constructor exploded") }

func StringMiddlewareLoad() string { return "not a middleware" }

func PlainMiddlewareLoad() http.Handler { return http.NotFoundHandler() }

func TwoMiddlewareLoad() (Handler, error) { return form("two"), nil }

func ArgMiddlewareLoad(name string) Handler { return form(name) }

var VarMiddlewareLoad = form("var")

// WrapPanicMiddlewareLoad panics when it wraps a handler, at start-up.
func WrapPanicMiddlewareLoad() mux.MiddlewareFunc {
	return func(http.Handler) http.Handler { panic("wrapping exploded") }
}
