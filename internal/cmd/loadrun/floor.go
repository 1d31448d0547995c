package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/xid"
	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/logbuf"
)

// withFeatures wraps work in what plugind's default chain does for a
// plugin's request, written inline as a plain net/http server would,
// each in its cheapest form: an in-flight gauge, a request id (the
// client's X-Request-Id if it sent one, else a new xid) returned in the
// answer and carried in the request's context, the security headers and
// the Vary that the gzip layer adds for a client not accepting gzip, and
// once the answer is written a zerolog access line with plugind's fields
// (status and size kept by a wrapping writer) and a request counter and duration histogram
// whose children are resolved once. featuresServer
// serves it with plugind's default timeouts.
//
// It is the floor of the features: no server that keeps them can serve
// hello's work faster on the same machine, so its ratio to plain+work
// bounds what plugind's default chain can reach, and plugind's ratio to
// it is the cost of plugind's own machinery (routing, the plugin call,
// the legacy adapter, limits, recovery).
func withFeatures(work http.Handler, file, fn string, logger zerolog.Logger) http.Handler {
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{Name: "in_flight"})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "requests_total"}, []string{"plugin", "func", "method", "status"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "request_duration_seconds"}, []string{"plugin", "method"})
	prometheus.NewRegistry().MustRegister(inFlight, requests, durations)
	count, took := requests.WithLabelValues(file, fn, http.MethodGet, "200"), durations.WithLabelValues(file, http.MethodGet)
	one := func(v string) []string { return []string{v}[:1:1] }
	nosniff, deny, noReferrer, sameOrigin, csp, vary := one("nosniff"), one("DENY"), one("no-referrer"), one("same-origin"),
		one("default-src 'none'; frame-ancestors 'none'"), one("Accept-Encoding")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		inFlight.Inc()
		defer inFlight.Dec()
		h := w.Header()
		id := ""
		if v := r.Header["X-Request-Id"]; len(v) > 0 {
			id = v[0]
		} else {
			id = xid.NewWithTime(start).String()
		}
		h["X-Request-Id"] = []string{id}
		h["X-Content-Type-Options"] = nosniff
		h["X-Frame-Options"] = deny
		h["Referrer-Policy"] = noReferrer
		h["Cross-Origin-Resource-Policy"] = sameOrigin
		h["Content-Security-Policy"] = csp
		h["Vary"] = vary
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			d := time.Since(start)
			var client [64]byte
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			logger.Info().Str("request_id", id).Str("plugin", file).Str("func", fn).
				Str("method", r.Method).Str("path", r.URL.Path).Bytes("client", append(client[:0], host...)).
				Int("status", rec.status).Int("size", rec.size).Dur("duration", d).Msg("request")
			count.Inc()
			took.Observe(d.Seconds())
		}()
		work.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

type requestIDKey struct{}

// recorder keeps an answer's status and size for the access line.
type recorder struct {
	http.ResponseWriter
	status, size int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.ResponseWriter.Write(p)
	r.size += n
	return n, err
}

// startFeatures serves hello's work with the features (helloWork for
// path, withFeatures) from this process, its access log in logPath, and
// checks that it answers with the header names of want, the default
// chain's answer: a floor missing one would measure less. It returns the
// base URL and a function that closes the server and the log.
func startFeatures(ctx context.Context, logPath, path string, want http.Header) (string, func(), error) {
	log, err := os.Create(logPath)
	if err != nil {
		return "", nil, fmt.Errorf("plain+features: %w", err)
	}
	file, fn := pluginRoute(path)
	url, closeServer, err := serve(featuresServer(withFeatures(helloWork(path), file, fn, accessLogger(log))))
	if err != nil {
		log.Close()
		return "", nil, err
	}
	closeAll := func() {
		closeServer()
		log.Close()
	}
	if _, h, err := get(ctx, url+path, ""); err != nil {
		closeAll()
		return "", nil, fmt.Errorf("plain+features: %w", err)
	} else if got, want := headerNames(h), headerNames(want); !slices.Equal(got, want) {
		closeAll()
		return "", nil, fmt.Errorf("plain+features answers with headers %q, the default chain with %q: want the same", got, want)
	}
	return url, closeAll, nil
}

// headerNames is h's keys, sorted.
func headerNames(h http.Header) []string { return slices.Sorted(maps.Keys(h)) }

// accessLogger is the access log as plugind's: zerolog with timestamps,
// buffered by internal/logbuf into w.
func accessLogger(w io.Writer) zerolog.Logger {
	return zerolog.New(logbuf.New(w, 64<<10, 100*time.Millisecond)).With().Timestamp().Logger()
}

// featuresServer serves h with plugind's default timeouts (prest.toml's
// http.* keys).
func featuresServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
}
