// middleware exports middleware plugins in every accepted form.
package main

import "net/http"

// FirstMiddlewareLoad is prestd's (negroni's) form.
func FirstMiddlewareLoad(w http.ResponseWriter, r *http.Request, next http.HandlerFunc) {
	w.Header().Add("X-Chain", "first")
	next(w, r)
}

// SecondMiddlewareLoad is a constructor of the standard form.
func SecondMiddlewareLoad() func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("X-Chain", "second")
			next.ServeHTTP(w, r)
		})
	}
}

// GuardMiddlewareLoad refuses requests without X-Pass.
func GuardMiddlewareLoad(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Pass") == "" && r.URL.Path != "/_PLUGINS" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"no pass"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// BoomMiddlewareLoad panics on requests that ask for it.
func BoomMiddlewareLoad(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("boom") != "" {
			panic("middleware exploded")
		}
		next.ServeHTTP(w, r)
	})
}

// WrongMiddlewareLoad has no middleware signature.
func WrongMiddlewareLoad(n int) int { return n }
