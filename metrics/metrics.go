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
	"sync"
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
	busMessages   *prometheus.CounterVec
	busDelivered  *prometheus.CounterVec
	busErrors     *prometheus.CounterVec
	tasks         *prometheus.CounterVec

	children requestChildren
}

// requestKey is one series of the request metrics.
type requestKey struct {
	plugin, fn, method string
	status             int
}

// requestChild is a series' counter and histogram, resolved once:
// WithLabelValues hashes its labels and formats the status on every call.
type requestChild struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// requestChildren caches requestChild by requestKey. Keys are bounded as
// the labels are (see the package comment).
type requestChildren struct {
	mu sync.RWMutex // guards m
	m  map[requestKey]requestChild
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
		busMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugind_bus_messages_total", Help: "Bus messages published (events) or dispatched (commands, queries), by name.",
		}, []string{"kind", "name"}),
		busDelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugind_bus_deliveries_total", Help: "Bus messages delivered to listeners or handlers, by name.",
		}, []string{"kind", "name"}),
		busErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugind_bus_errors_total", Help: "Bus messages whose listeners or handler failed (or had no handler), by name.",
		}, []string{"kind", "name"}),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugind_tasks_finished_total", Help: "Background tasks finished, by plugin and state.",
		}, []string{"plugin", "state"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.inFlight, m.builds, m.buildDuration, m.events,
		m.busMessages, m.busDelivered, m.busErrors, m.tasks,
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
	k := requestKey{plugin, fn, method, status}
	m.children.mu.RLock()
	c, ok := m.children.m[k]
	m.children.mu.RUnlock()
	if !ok {
		c = requestChild{
			count:    m.requests.WithLabelValues(plugin, fn, method, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(plugin, method),
		}
		m.children.mu.Lock()
		if m.children.m == nil {
			m.children.m = make(map[requestKey]requestChild)
		}
		m.children.m[k] = c
		m.children.mu.Unlock()
	}
	c.count.Inc()
	c.duration.Observe(d.Seconds())
}

// Started counts a request in flight; Done counts it out. Two methods,
// not a func to defer: a method value of the gauge would be a closure
// allocated per request.
func (m *Metrics) Started() { m.inFlight.Inc() }

// Done counts a request that Started counted out.
func (m *Metrics) Done() { m.inFlight.Dec() }

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

// BusMessage records a bus message. Names are chosen by code, not by
// clients; a plugin that makes up names per request makes series too.
func (m *Metrics) BusMessage(kind, name string, delivered int, failed bool) {
	m.busMessages.WithLabelValues(kind, name).Inc()
	m.busDelivered.WithLabelValues(kind, name).Add(float64(delivered))
	if failed {
		m.busErrors.WithLabelValues(kind, name).Inc()
	}
}

// TaskFinished records a finished task.
func (m *Metrics) TaskFinished(plugin, state string) {
	m.tasks.WithLabelValues(plugin, state).Inc()
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
