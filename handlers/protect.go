package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/klauspost/compress/gzhttp"
	"github.com/rs/cors"
)

// CORSPolicy is one CORS configuration (prestd's cors.* keys).
type CORSPolicy struct {
	Origins     []string
	Methods     []string
	Headers     []string
	Credentials bool
}

// corsHandler answers CORS on plugin routes, preflights included, without
// touching plugins: with a plugin's own policy where it has one, the
// global one otherwise, and not at all without one.
func (s *Server) corsHandler(next http.Handler) http.Handler {
	wrap := func(p CORSPolicy) http.Handler {
		return cors.New(cors.Options{
			AllowedOrigins:   p.Origins,
			AllowedMethods:   p.Methods,
			AllowedHeaders:   p.Headers,
			AllowCredentials: p.Credentials,
		}).Handler(next)
	}
	var global http.Handler
	if len(s.CORS.Origins) > 0 {
		global = wrap(s.CORS)
	}
	perPlugin := make(map[string]http.Handler, len(s.PluginCORS))
	for name, p := range s.PluginCORS {
		perPlugin[strings.ToLower(name)] = wrap(p) // configuration keys are case-insensitive
	}
	if global == nil && len(perPlugin) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := perPlugin[strings.ToLower(infoFrom(r.Context()).file)]; ok {
			h.ServeHTTP(w, r)
		} else if global != nil {
			global.ServeHTTP(w, r)
		} else {
			next.ServeHTTP(w, r)
		}
	})
}

// securityHeaders sets the usual protective headers on every response,
// HSTS under TLS. A handler may replace them (a plugin serving HTML sets
// its own Content-Security-Policy).
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	if !s.SecurityHeaders {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if s.CSP != "" {
			h.Set("Content-Security-Policy", s.CSP)
		}
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}

// compress gzips responses of at least GzipMinBytes for clients that
// accept it.
func (s *Server) compress(next http.Handler) http.Handler {
	if !s.Gzip {
		return next
	}
	wrap, err := gzhttp.NewWrapper(gzhttp.MinSize(s.GzipMinBytes), gzhttp.ExceptContentTypes([]string{"text/event-stream"}))
	if err != nil {
		panic(fmt.Sprintf("gzip options: %v", err)) // only from invalid constant options
	}
	return wrap(next)
}

// errBodyTooLarge is a request body over http.maxbodybytes.
var errBodyTooLarge = errors.New("request body too large")

// limitBody refuses a declared body over MaxBodyBytes with 413, and cuts
// off an undeclared one there.
func (s *Server) limitBody(next http.Handler) http.Handler {
	if s.MaxBodyBytes <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.MaxBodyBytes {
			s.writeError(w, r, fmt.Errorf("%w: %d bytes, the limit is %d", errBodyTooLarge, r.ContentLength, s.MaxBodyBytes))
			return
		}
		limitReader(w, r, s.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}
