// Package metrics is plugind's Prometheus instrumentation: requests by
// plugin, function, method and status with latency histograms, requests
// in flight, builds by outcome with their durations, and each plugin's
// loaded versions and the memory they hold.
//
// Label values are bounded: plugin and function names appear only for
// requests that reached an existing handler (others are labelled ""),
// methods outside the standard set are "OTHER", so no client can create
// series at will.
package metrics

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/plugind/plugind/loader"
)

// Metrics holds the collectors, in a registry of their own.
type Metrics struct {
	reg           *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	inFlight      prometheus.Gauge
	builds        *prometheus.CounterVec
	buildDuration *prometheus.HistogramVec
	events        *prometheus.CounterVec
}

// New registers the collectors; stats reports loaded versions per plugin
// at scrape time.
func New(stats func() []loader.Stat) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugind_requests_total", Help: "HTTP requests by plugin, function, method and status.",
		}, []string{"plugin", "func", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plugind_request_duration_seconds", Help: "HTTP request latency by plugin and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"plugin", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "plugind_requests_in_flight", Help: "HTTP requests being served.",
		}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugind_builds_total", Help: "Plugin builds by plugin and outcome (ok, failed).",
		}, []string{"plugin", "outcome"}),
		buildDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plugind_build_duration_seconds", Help: "Plugin build time.",
			Buckets: []float64{.25, .5, 1, 2, 5, 10, 20, 40, 80, 160},
		}, []string{"plugin"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugind_plugin_events_total", Help: "Plugin lifecycle events (loaded, reloaded, load_failed, removed).",
		}, []string{"plugin", "event"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.inFlight, m.builds, m.buildDuration, m.events,
		&loadedCollector{stats: stats},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is where the collectors live, for tests and further metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

// Request records a finished request. plugin and fn must be "" unless the
// request reached an existing handler.
func (m *Metrics) Request(plugin, fn, method string, status int, d time.Duration) {
	if !slices.Contains(knownMethods, method) {
		method = "OTHER"
	}
	m.requests.WithLabelValues(plugin, fn, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(plugin, method).Observe(d.Seconds())
}

// InFlight counts a request in; the returned func counts it out.
func (m *Metrics) InFlight() func() {
	m.inFlight.Inc()
	return m.inFlight.Dec
}

// Event records a loader event.
func (m *Metrics) Event(ev loader.Event) {
	switch ev.Kind {
	case loader.EventBuilt:
		m.builds.WithLabelValues(ev.Plugin, "ok").Inc()
		m.buildDuration.WithLabelValues(ev.Plugin).Observe(ev.Duration.Seconds())
	case loader.EventBuildFailed:
		m.builds.WithLabelValues(ev.Plugin, "failed").Inc()
		m.buildDuration.WithLabelValues(ev.Plugin).Observe(ev.Duration.Seconds())
	default:
		m.events.WithLabelValues(ev.Plugin, string(ev.Kind)).Inc()
	}
}

// loadedCollector reports loaded versions and bytes at scrape time.
type loadedCollector struct {
	stats func() []loader.Stat
}

var (
	versionsDesc = prometheus.NewDesc("plugind_plugin_loaded_versions", "Versions of a plugin loaded into the process (Go cannot unload them).", []string{"plugin"}, nil)
	bytesDesc    = prometheus.NewDesc("plugind_plugin_loaded_bytes", "Artifact bytes of a plugin's loaded versions: memory never given back.", []string{"plugin"}, nil)
)

func (c *loadedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- versionsDesc
	ch <- bytesDesc
}

func (c *loadedCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.stats() {
		ch <- prometheus.MustNewConstMetric(versionsDesc, prometheus.GaugeValue, float64(s.Versions), s.Plugin)
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.GaugeValue, float64(s.Bytes), s.Plugin)
	}
}
