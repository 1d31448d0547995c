package handlers

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/klauspost/compress/gzhttp"
	"github.com/rs/cors"

	"github.com/plugind/plugind/loader"
)

// CORSPolicy is one CORS configuration (prestd's cors.* keys).
type CORSPolicy struct {
	Origins     []string
	Methods     []string
	Headers     []string
	Credentials bool
}

// pluginOf is the plugin a path addresses, or "" for other routes.
func pluginOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/_PLUGIN/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	if !loader.ValidName(name) {
		return ""
	}
	return name
}

// isOpen reports whether path stays open without credentials: the
// probes and the metrics, unless configured otherwise.
func (s *Server) isOpen(path string) bool {
	switch {
	case path == "/healthz" || path == "/readyz":
		return !s.AuthProbes
	case s.Metrics != nil && path == s.MetricsPath:
		return !s.AuthMetrics
	}
	return false
}

// authenticate refuses requests without valid credentials with 401 and
// WWW-Authenticate, before they reach any plugin or middleware plugin.
func (s *Server) authenticate(next http.Handler) http.Handler {
	if s.Auth == nil || !s.Auth.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.isOpen(r.URL.Path) {
			if err := s.Auth.Check(r, pluginOf(r.URL.Path)); err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="plugind"`)
				s.writeError(w, r, err)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// corsHandler answers CORS, preflights included, without touching
// plugins: with a plugin's own policy on its routes, the global one
// elsewhere, and not at all without one.
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
		if h, ok := perPlugin[strings.ToLower(pluginOf(r.URL.Path))]; ok {
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
		r.Body = http.MaxBytesReader(w, r.Body, s.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}
