// Package httpmetrics records request counts and latency histograms by route and status
// in Prometheus format, for both the control plane and the data plane.
package httpmetrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTP holds one binary's HTTP metrics and its registry. Safe for concurrent use.
type HTTP struct {
	Registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New returns metrics registered in a fresh registry, prefixed with namespace
// (e.g. "portcullis_dataplane"), with Go runtime and process collectors included.
func New(namespace string) *HTTP {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h := &HTTP{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests served, by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "HTTP request latency, by route, method and status.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method", "status"}),
	}
	reg.MustRegister(h.requests, h.latency)
	return h
}

// Observe records one request. route must be the route pattern, not the raw path, to
// keep label cardinality bounded; the method is recorded as Method gives it.
func (h *HTTP) Observe(route, method string, status int, d time.Duration) {
	method = Method(method)
	s := strconv.Itoa(status)
	h.requests.WithLabelValues(route, method, s).Inc()
	h.latency.WithLabelValues(route, method, s).Observe(d.Seconds())
}

// Handler serves the registry in Prometheus text format.
func (h *HTTP) Handler() http.Handler {
	return promhttp.HandlerFor(h.Registry, promhttp.HandlerOpts{})
}

// OtherMethod stands for any request method that is not one of HTTP's own.
const OtherMethod = "OTHER"

// Method is m if it is one of HTTP's methods (GET, HEAD, POST, PUT, PATCH, DELETE,
// OPTIONS, CONNECT, TRACE), else OtherMethod: a client chooses the method, so it
// must not choose label values or log text.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return OtherMethod
}
