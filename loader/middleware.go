package loader

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"

	"github.com/plugind/plugind/build"
)

// acceptedMiddleware is named in ErrSignature messages of middleware.
const acceptedMiddleware = "func(http.ResponseWriter, *http.Request, http.HandlerFunc), func(http.Handler) http.Handler, " +
	"or a func() returning one of those, a value with ServeHTTP(http.ResponseWriter, *http.Request, http.HandlerFunc) (negroni.Handler) " +
	"or a value with Middleware(http.Handler) http.Handler (mux.MiddlewareFunc)"

// negroniHandler is negroni.Handler's method set: prestd documents
// middleware constructors returning a negroni.Handler. Method sets match
// by shape, so a value of a type from any module that has it satisfies
// this interface.
type negroniHandler interface {
	ServeHTTP(http.ResponseWriter, *http.Request, http.HandlerFunc)
}

// muxMiddleware is gorilla/mux's middleware interface (mux.MiddlewareFunc
// has it).
type muxMiddleware interface {
	Middleware(http.Handler) http.Handler
}

// The two middleware func shapes, for conversions of named func types.
var (
	negroniFunc = reflect.TypeFor[func(http.ResponseWriter, *http.Request, http.HandlerFunc)]()
	muxFunc     = reflect.TypeFor[func(http.Handler) http.Handler]()
)

// Middleware loads middleware plugin file and returns its middleware fn,
// made from the symbol <fn>MiddlewareLoad.
//
// The plugin is where prestd keeps it: SRC/middlewares/FILE.go (or the
// folder SRC/middlewares/FILE/), or, without a source, the library
// prestd's build leaves in SRC/../middlewares/FILE.so. It is known to the
// pipeline as build.MiddlewareName(file), apart from any endpoint plugin
// FILE. Only if none of those exists, the endpoint plugin FILE
// (SRC/FILE.go) serves, as it did before; that location is deprecated and
// warned about once.
//
// The symbol is a middleware,
//
//	func(http.ResponseWriter, *http.Request, http.HandlerFunc)  // prestd's loader (negroni's)
//	func(http.Handler) http.Handler                              // gorilla/mux's
//
// or a constructor, a func with no arguments and one result, called once
// here (a panic contained, bounded by the hook timeout), whose result
//
//   - has the method ServeHTTP(http.ResponseWriter, *http.Request,
//     http.HandlerFunc): prestd's documented func() negroni.Handler;
//   - has the method Middleware(http.Handler) http.Handler:
//     mux.MiddlewareFunc;
//   - is a func of either shape above, of a named type or not.
//
// Methods are preferred to a func's own shape, as negroni and mux call
// them. A nil result, a constructor that panics and any other shape are
// ErrSignature (a panic: ErrPanic). Middleware runs in the server's
// process and loads once: a changed source applies at the next start.
//
// It waits for the plugin's build however long it takes: middleware is
// loaded at start-up, and a server must not start without it.
func (l *Loader) Middleware(ctx context.Context, file, fn string) (func(http.Handler) http.Handler, error) {
	if !ValidName(file) || !ValidFunc(fn) {
		return nil, newError(ErrBadName, file, nil, "invalid middleware %q/%q", file, fn)
	}
	if !Supported {
		return nil, newError(ErrUnsupported, file, nil, "%s", unsupportedReason)
	}
	name, err := l.middlewareSource(file)
	if err != nil {
		return nil, err
	}
	ch := l.flight.DoChan(name, func() (any, error) { return l.update(name) })
	var v *version
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		v = r.Val.(*version)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	symbol := fn + "MiddlewareLoad"
	sym, err := v.art.syms.Lookup(symbol)
	if err != nil {
		return nil, newError(ErrNoHandler, name, nil, "plugin %q has no %s", name, symbol)
	}
	mw, err := l.middleware(ctx, name, symbol, sym)
	if err != nil {
		return nil, err
	}
	return l.guard(name, symbol, mw), nil
}

// middlewareSource is the pipeline's name of middleware plugin file:
// build.MiddlewareName(file) if it has a source or library, else the
// endpoint plugin file, deprecated.
func (l *Loader) middlewareSource(file string) (string, error) {
	name := build.MiddlewareName(file)
	_, err := l.pipe.Find(name)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return name, err
	}
	if _, err := l.pipe.Find(file); err != nil {
		if errors.Is(err, ErrNotFound) {
			return "", newError(ErrNotFound, name, nil,
				"middleware %q not found: put it in src/%s/%s.go in the plugin path (or its library in %s/%s.so)",
				file, build.MiddlewareDir, file, build.MiddlewareDir, file)
		}
		return "", err
	}
	if _, warned := l.oldMiddleware.LoadOrStore(file, true); !warned {
		l.log.Warn().Str("plugin", file).
			Msgf("middleware %q is loaded from src/%s.go, among the endpoint plugins, which is deprecated: move it to src/%s/%s.go, where prestd keeps middleware", file, file, build.MiddlewareDir, file)
	}
	return file, nil
}

// middleware turns symbol sym of plugin name into a middleware: see
// Middleware for the forms accepted.
func (l *Loader) middleware(ctx context.Context, name, symbol string, sym any) (func(http.Handler) http.Handler, error) {
	switch f := sym.(type) {
	case func(http.Handler) http.Handler:
		return f, nil
	case func(http.ResponseWriter, *http.Request, http.HandlerFunc):
		return negroniMiddleware(f), nil
	}
	t := reflect.TypeOf(sym)
	if t.Kind() != reflect.Func || t.NumIn() != 0 || t.NumOut() != 1 || t.IsVariadic() {
		return nil, newError(ErrSignature, name, nil, "plugin %q: %s has type %s; want %s", name, symbol, typeName(sym), acceptedMiddleware)
	}
	v, err := l.construct(ctx, name, symbol, reflect.ValueOf(sym))
	if err != nil {
		return nil, err
	}
	if isNil(v) {
		return nil, newError(ErrSignature, name, nil, "plugin %q: %s (%s) returned nil", name, symbol, t)
	}
	if mw := adaptMiddleware(v); mw != nil {
		return mw, nil
	}
	return nil, newError(ErrSignature, name, nil, "plugin %q: %s (%s) returned a %T; want %s", name, symbol, t, v, acceptedMiddleware)
}

// construct calls the constructor c of plugin name and returns its
// result's dynamic value, containing a panic and waiting at most the
// hook timeout: a constructor that blocks must not hold up the start.
func (l *Loader) construct(ctx context.Context, name, symbol string, c reflect.Value) (any, error) {
	type result struct {
		v   any
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: PanicError(name, fmt.Sprintf("plugin %q: %s panicked", name, symbol), p)}
			}
		}()
		done <- result{v: c.Call(nil)[0].Interface()}
	}()
	ctx, cancel := context.WithTimeout(ctx, l.hookTimeout)
	defer cancel()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return nil, newError(ErrTimeout, name, ctx.Err(), "plugin %q: %s did not return within %s", name, symbol, l.hookTimeout)
	}
}

// adaptMiddleware turns a constructor's result v into a middleware, or
// returns nil if it has no middleware shape.
func adaptMiddleware(v any) func(http.Handler) http.Handler {
	switch m := v.(type) {
	case negroniHandler:
		return negroniMiddleware(m.ServeHTTP)
	case muxMiddleware:
		return m.Middleware
	}
	rv := reflect.ValueOf(v)
	switch t := rv.Type(); {
	case t.ConvertibleTo(muxFunc):
		return rv.Convert(muxFunc).Interface().(func(http.Handler) http.Handler)
	case t.ConvertibleTo(negroniFunc):
		return negroniMiddleware(rv.Convert(negroniFunc).Interface().(func(http.ResponseWriter, *http.Request, http.HandlerFunc)))
	}
	return nil
}

// negroniMiddleware is the middleware of negroni's (and prestd's) shape f.
func negroniMiddleware(f func(http.ResponseWriter, *http.Request, http.HandlerFunc)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f(w, r, next.ServeHTTP) })
	}
}

// isNil reports whether v is nil or holds a nil func, pointer, map,
// channel, slice or interface.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Func, reflect.Pointer, reflect.Map, reflect.Chan, reflect.Slice, reflect.Interface, reflect.UnsafePointer:
		return rv.IsNil()
	}
	return false
}

// guard contains a panic of mw while it wraps a handler, which happens
// as the server builds its routes: the server must not die of it. The
// handler it would have made is replaced by one that panics with the same
// value on every request, which the server answers as a middleware's
// panic (500): the route fails closed. A nil handler fails the same way.
func (l *Loader) guard(name, symbol string, mw func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) (h http.Handler) {
		defer func() {
			if p := recover(); p != nil {
				l.log.Error().Str("plugin", name).Str("symbol", symbol).Any("panic", p).
					Msg("middleware panicked wrapping a route: the route answers 500")
				h = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(p) })
			}
		}()
		if h = mw(next); h == nil {
			panic(fmt.Sprintf("%s returned a nil http.Handler", symbol))
		}
		return h
	}
}
