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
// its own Content-Security-Policy). The values are slices built once,
// shared by every response: each has length and capacity 1, so a
// handler's Header().Add to one makes a new slice rather than writing
// into the shared one.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	if !s.SecurityHeaders {
		return next
	}
	one := func(v string) []string { return []string{v}[:1:1] }
	nosniff, deny, noReferrer, sameOrigin := one("nosniff"), one("DENY"), one("no-referrer"), one("same-origin")
	hsts := one("max-age=63072000; includeSubDomains")
	var csp []string
	if s.CSP != "" {
		csp = one(s.CSP)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Canonical keys, assigned directly: Set would canonicalise and
		// allocate a slice per header per request.
		h["X-Content-Type-Options"] = nosniff
		h["X-Frame-Options"] = deny
		h["Referrer-Policy"] = noReferrer
		h["Cross-Origin-Resource-Policy"] = sameOrigin
		if csp != nil {
			h["Content-Security-Policy"] = csp
		}
		if r.TLS != nil {
			h["Strict-Transport-Security"] = hsts
		}
		next.ServeHTTP(w, r)
	})
}

// compress gzips responses of at least GzipMinBytes for clients that
// accept it (gzip or zstd). A request whose Accept-Encoding names neither skips
// the compressing wrapper (and what it allocates) and gets only the
// Vary: Accept-Encoding the wrapper would have added; one that mentions
// it goes through gzhttp, which parses the header properly (q=0 too).
func (s *Server) compress(next http.Handler) http.Handler {
	if !s.Gzip {
		return next
	}
	wrap, err := gzhttp.NewWrapper(gzhttp.MinSize(s.GzipMinBytes), gzhttp.ExceptContentTypes([]string{"text/event-stream"}))
	if err != nil {
		panic(fmt.Sprintf("gzip options: %v", err)) // only from invalid constant options
	}
	gz := wrap(next)
	vary := []string{"Accept-Encoding"}[:1:1]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if acceptsCompression(r.Header["Accept-Encoding"]) {
			gz.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		if v, ok := h["Vary"]; ok {
			h["Vary"] = append(v, "Accept-Encoding")
		} else {
			h["Vary"] = vary
		}
		next.ServeHTTP(w, r)
	})
}

// acceptsCompression reports whether Accept-Encoding values may accept
// what gzhttp sends: they name gzip, zstd or *, in any case. gzhttp
// decides the rest.
func acceptsCompression(values []string) bool {
	for _, v := range values {
		for i := 0; i < len(v); i++ {
			switch v[i] {
			case '*':
				return true
			case 'g', 'G', 'z', 'Z':
				if len(v)-i >= 4 && (strings.EqualFold(v[i:i+4], "gzip") || strings.EqualFold(v[i:i+4], "zstd")) {
					return true
				}
			}
		}
	}
	return false
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
