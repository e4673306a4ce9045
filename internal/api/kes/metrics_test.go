package kes

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

func TestMetricsRender(t *testing.T) {
	m := newMetrics(time.Now().Add(-time.Minute))
	parse := func() map[string]*dto.MetricFamily {
		t.Helper()
		ct, body, err := m.render(http.Header{})
		if err != nil {
			t.Fatal(err)
		}
		if format := expfmt.ResponseFormat(http.Header{"Content-Type": {ct}}); format.FormatType() != expfmt.TypeTextPlain {
			t.Fatalf("Content-Type %q is not the text format", ct)
		}
		var p expfmt.TextParser
		families, err := p.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("parse %q: %v", body, err)
		}
		return families
	}

	families := parse()
	single := []string{
		"kes_http_request_active", "kes_http_response_time", "kes_log_audit_events", "kes_log_error_events",
		"kes_system_up_time", "kes_system_num_cpu", "kes_system_num_cpu_used", "kes_system_num_threads",
		"kes_system_mem_heap_used", "kes_system_mem_heap_objects", "kes_system_mem_stack_used",
	}
	// The client refuses empty families and, but for the request
	// counters, families with more than one sample.
	if len(families) != len(single) {
		t.Errorf("%d families before any request, want %d: %v", len(families), len(single), families)
	}
	for _, name := range single {
		if f := families[name]; f == nil || len(f.GetMetric()) != 1 {
			t.Errorf("family %s: %v, want one sample", name, f)
		}
	}
	if up := families["kes_system_up_time"].GetMetric()[0].GetGauge().GetValue(); up < 59 {
		t.Errorf("kes_system_up_time = %v, want about 60", up)
	}

	m.observe(200, 5*time.Millisecond)
	m.observe(200, 20*time.Millisecond)
	m.observe(404, time.Millisecond)
	m.observe(403, time.Millisecond)
	m.observe(503, 2*time.Second)
	families = parse()
	sum := func(name string) (n float64) {
		for _, m := range families[name].GetMetric() {
			n += m.GetCounter().GetValue()
		}
		return n
	}
	if ok, bad, fail := sum("kes_http_request_success"), sum("kes_http_request_error"), sum("kes_http_request_failure"); ok != 2 || bad != 2 || fail != 1 {
		t.Errorf("requests ok/err/fail = %v/%v/%v, want 2/2/1", ok, bad, fail)
	}
	if n := len(families["kes_http_request_error"].GetMetric()); n != 2 {
		t.Errorf("kes_http_request_error has %d series, want one per code", n)
	}
	h := families["kes_http_response_time"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 5 || h.GetBucket()[0].GetUpperBound() != 0.01 || h.GetBucket()[0].GetCumulativeCount() != 3 {
		t.Errorf("kes_http_response_time = %v", h)
	}
}
