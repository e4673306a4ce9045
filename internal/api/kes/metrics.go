package kes

import (
	"bytes"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// latencyBuckets are the bounds of kes_http_response_time, in seconds, as
// KES has them.
var latencyBuckets = []float64{.01, .05, .1, .25, .5, 1, 1.5, 3, 5, 10}

// metrics are the kes_* metrics of spec §6.1, in a registry of their own:
// the client refuses families with other than one sample (except the three
// request counters, which it sums over their code label), so nothing else
// may be registered there.
type metrics struct {
	reg         *prometheus.Registry
	success     *prometheus.CounterVec // 2xx, by code
	errors      *prometheus.CounterVec // 4xx, by code
	failures    *prometheus.CounterVec // 5xx, by code
	active      prometheus.Gauge
	latency     prometheus.Histogram
	auditEvents prometheus.Counter
	errorEvents prometheus.Counter
}

func newMetrics(started time.Time) *metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kes", Subsystem: "http", Name: name, Help: help}, []string{"code"})
	}
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		success:  counter("request_success", "Number of requests that have been served successfully."),
		errors:   counter("request_error", "Number of request that failed due to some error. (HTTP 4xx status code)"),
		failures: counter("request_failure", "Number of request that failed due to some internal failure. (HTTP 5xx status code)"),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kes", Subsystem: "http", Name: "request_active",
			Help: "Number of active requests that are not finished, yet.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "kes", Subsystem: "http", Name: "response_time",
			Help: "Histogram of request response times spawning from 10ms to 10s.", Buckets: latencyBuckets,
		}),
		auditEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kes", Subsystem: "log", Name: "audit_events",
			Help: "Number of audit log events written to the audit log targets.",
		}),
		errorEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kes", Subsystem: "log", Name: "error_events",
			Help: "Number of error log events written to the error log targets.",
		}),
	}
	m.reg.MustRegister(m.success, m.errors, m.failures, m.active, m.latency, m.auditEvents, m.errorEvents, systemCollector{started: started})
	return m
}

// observe counts a finished request by its status and times it.
func (m *metrics) observe(status int, d time.Duration) {
	code := strconv.Itoa(status)
	switch {
	case status >= 500:
		m.failures.WithLabelValues(code).Inc()
	case status >= 400:
		m.errors.WithLabelValues(code).Inc()
	case status >= 200 && status < 300:
		m.success.WithLabelValues(code).Inc()
	}
	m.latency.Observe(d.Seconds())
}

// render returns the metrics in the format negotiated from h, whole, so
// that the reply has a Content-Length.
func (m *metrics) render(h http.Header) (string, []byte, error) {
	families, err := m.reg.Gather()
	if err != nil {
		return "", nil, err
	}
	format := expfmt.Negotiate(h)
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return "", nil, err
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		if err := c.Close(); err != nil {
			return "", nil, err
		}
	}
	return string(format), buf.Bytes(), nil
}

// systemCollector reports the kes_system_* gauges, reading the memory
// statistics once per scrape.
type systemCollector struct {
	started time.Time
}

var (
	descUpTime      = prometheus.NewDesc("kes_system_up_time", "The time the server has been up and running in seconds.", nil, nil)
	descCPUs        = prometheus.NewDesc("kes_system_num_cpu", "The number of logical CPUs available on the system.", nil, nil)
	descUsableCPUs  = prometheus.NewDesc("kes_system_num_cpu_used", "The number of logical CPUs usable by the server.", nil, nil)
	descThreads     = prometheus.NewDesc("kes_system_num_threads", "The number of concurrent co-routines/threads that currently exists.", nil, nil)
	descHeapUsed    = prometheus.NewDesc("kes_system_mem_heap_used", "The number of bytes that are currently allocated on the heap memory.", nil, nil)
	descHeapObjects = prometheus.NewDesc("kes_system_mem_heap_objects", "The number of objects that are currently allocated on the heap memory.", nil, nil)
	descStackUsed   = prometheus.NewDesc("kes_system_mem_stack_used", "The number of bytes that are currently used on the stack memory.", nil, nil)
)

func (systemCollector) Describe(c chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUpTime, descCPUs, descUsableCPUs, descThreads, descHeapUsed, descHeapObjects, descStackUsed} {
		c <- d
	}
}

func (s systemCollector) Collect(c chan<- prometheus.Metric) {
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	gauge := func(d *prometheus.Desc, v float64) { c <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(descUpTime, time.Since(s.started).Truncate(10*time.Millisecond).Seconds())
	gauge(descCPUs, float64(runtime.NumCPU()))
	gauge(descUsableCPUs, float64(runtime.GOMAXPROCS(0)))
	gauge(descThreads, float64(runtime.NumGoroutine()))
	gauge(descHeapUsed, float64(mem.HeapAlloc))
	gauge(descHeapObjects, float64(mem.HeapObjects))
	gauge(descStackUsed, float64(mem.StackSys))
}
