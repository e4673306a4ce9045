package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The APIs a node serves, as the api label names them.
const (
	APIMinKMS = "minkms" // the MinIO KMS API, /version and /v1/health/* included
	APIKES    = "kes"    // the KES API
	APIRPC    = "rpc"    // /v1/rpc/*, between the nodes of a cluster
)

// sizeBuckets are the bounds of the request and response size
// histograms: 64 B to 16 MiB, by factors of 4.
var sizeBuckets = prometheus.ExponentialBuckets(64, 4, 10)

// durationBuckets are the bounds of the latency histogram, in seconds:
// crypto on one node takes well under a millisecond, writes through raft
// a few milliseconds, streams (logs, backups) as long as they last.
var durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// httpMetrics are the metrics of served HTTP requests.
type httpMetrics struct {
	requests *prometheus.CounterVec   // api, code
	inFlight *prometheus.GaugeVec     // api
	duration *prometheus.HistogramVec // api
	reqSize  *prometheus.HistogramVec // api
	respSize *prometheus.HistogramVec // api
	apis     map[string]*APIRequests  // the known APIs, resolved once
}

func newHTTPMetrics() httpMetrics {
	h := httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests served, by API and status code.",
		}, []string{"api", "code"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "http_requests_in_flight",
			Help: "HTTP requests being served now, by API; log streams count while they last.",
		}, []string{"api"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time from receiving a request's headers to the end of its reply, by API.",
			Buckets: durationBuckets,
		}, []string{"api"}),
		reqSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_size_bytes",
			Help:    "Size of request bodies, by API.",
			Buckets: sizeBuckets,
		}, []string{"api"}),
		respSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_response_size_bytes",
			Help:    "Size of response bodies, by API.",
			Buckets: sizeBuckets,
		}, []string{"api"}),
		apis: map[string]*APIRequests{},
	}
	for _, api := range []string{APIMinKMS, APIKES, APIRPC} {
		h.apis[api] = h.forAPI(api)
	}
	return h
}

func (h *httpMetrics) register(reg *prometheus.Registry) {
	reg.MustRegister(h.requests, h.inFlight, h.duration, h.reqSize, h.respSize)
}

func (h *httpMetrics) forAPI(api string) *APIRequests {
	r := &APIRequests{
		requests: h.requests.MustCurryWith(prometheus.Labels{"api": api}),
		inFlight: h.inFlight.WithLabelValues(api),
		duration: h.duration.WithLabelValues(api),
		reqSize:  h.reqSize.WithLabelValues(api),
		respSize: h.respSize.WithLabelValues(api),
		byCode:   map[int]prometheus.Counter{},
	}
	// The counters of the common codes are resolved once: looking a
	// labelled counter up hashes its labels, on every request.
	for _, code := range []int{200, 400, 403, 404, 409, 413, 500, 502, 503} {
		r.byCode[code] = r.requests.WithLabelValues(strconv.Itoa(code))
	}
	return r
}

// APIRequests are the request metrics of one API.
type APIRequests struct {
	requests *prometheus.CounterVec     // code
	byCode   map[int]prometheus.Counter // requests, resolved for common codes; read-only
	inFlight prometheus.Gauge
	duration prometheus.Observer
	reqSize  prometheus.Observer
	respSize prometheus.Observer
}

// Requests returns the request metrics of api, one of the API constants.
func (m *Metrics) Requests(api string) *APIRequests {
	if r, ok := m.http.apis[api]; ok {
		return r
	}
	return m.http.forAPI(api)
}

// Start counts a request as in flight until Done.
func (r *APIRequests) Start() { r.inFlight.Inc() }

// Done counts a request that Start counted as in flight, with the status
// code of its reply, how long it took, and the sizes of its request and
// response bodies.
func (r *APIRequests) Done(code int, d time.Duration, reqSize, respSize int64) {
	r.inFlight.Dec()
	if c, ok := r.byCode[code]; ok {
		c.Inc()
	} else {
		r.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	}
	r.duration.Observe(d.Seconds())
	r.reqSize.Observe(float64(reqSize))
	r.respSize.Observe(float64(respSize))
}
