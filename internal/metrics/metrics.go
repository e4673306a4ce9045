// Package metrics holds Keep's Prometheus metrics, served as OpenMetrics
// or Prometheus text at /v1/health/metrics: HTTP requests by API and
// status, commands by name and outcome, the node's raft state, the expiry
// of its TLS certificates, the usage of keys, and the Go runtime and
// process collectors.
//
// Metrics has its own registry, so nothing registered elsewhere in the
// process (raft's go-metrics, libraries) leaks into it. docs/grafana/keep.json
// is a dashboard of these metrics; a test keeps its names in step.
package metrics

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/keep-kms/keep/internal/buildinfo"
)

// namespace prefixes the name of every Keep metric.
const namespace = "keep"

// Metrics are the metrics of one node. They are safe for concurrent use.
type Metrics struct {
	reg      *prometheus.Registry
	http     httpMetrics
	commands *prometheus.CounterVec
	// resolved caches the counters of commands: resolving one hashes its
	// three label values, for every command of every request.
	resolved sync.Map // commandKey → prometheus.Counter
	state    *stateCollector
	usage    *usageCollector
}

// New returns the metrics of a node, with its own registry holding Keep's
// metrics and the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		http:     newHTTPMetrics(),
		commands: newCommandCounter(),
		state:    &stateCollector{},
		usage:    &usageCollector{},
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace:   namespace,
			Name:        "build_info",
			Help:        "Always 1; the labels name the version and commit of the keep binary.",
			ConstLabels: prometheus.Labels{"version": buildinfo.Version, "commit": buildinfo.Commit},
		}, func() float64 { return 1 }),
		m.commands,
		m.state,
		m.usage,
	)
	m.http.register(m.reg)
	return m
}

// Encode gathers the metrics and encodes them in the exposition format
// the Accept header of h asks for (OpenMetrics 1.0 or Prometheus text),
// whole, so that the reply can carry a Content-Length. It returns the
// body and its content type. A collector that fails is logged and left
// out; the others are still sent.
func (m *Metrics) Encode(h http.Header) (body []byte, contentType string, err error) {
	families, err := m.reg.Gather()
	if err != nil {
		if len(families) == 0 {
			return nil, "", fmt.Errorf("failed to gather metrics: %w", err)
		}
		slog.Warn("some metrics could not be gathered", "err", err)
	}
	format := expfmt.NegotiateIncludingOpenMetrics(h)
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return nil, "", fmt.Errorf("failed to encode metric %s: %w", f.GetName(), err)
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		if err := c.Close(); err != nil {
			return nil, "", fmt.Errorf("failed to encode metrics: %w", err)
		}
	}
	return buf.Bytes(), string(format), nil
}
