package promrules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestFamily(t *testing.T) {
	typ := func(t dto.MetricType) *dto.MetricFamily { return &dto.MetricFamily{Type: &t} }
	families := map[string]*dto.MetricFamily{
		"req_total":        typ(dto.MetricType_COUNTER),
		"role":             typ(dto.MetricType_GAUGE),
		"duration_seconds": typ(dto.MetricType_HISTOGRAM),
		"size_bytes":       typ(dto.MetricType_SUMMARY),
	}
	for _, tc := range []struct {
		name, want, err string
	}{
		{"req_total", "req_total", ""},
		{"role", "role", ""},
		{"duration_seconds_bucket", "duration_seconds", ""},
		{"duration_seconds_sum", "duration_seconds", ""},
		{"duration_seconds_count", "duration_seconds", ""},
		{"size_bytes_count", "size_bytes", ""},
		{"size_bytes_bucket", "", "summary, which has no _bucket"},
		{"duration_seconds", "", "is a histogram"},
		{"role_count", "", "gauge, which has no _count"},
		{"req", "", "no exported metric"},
		{"req_total_total", "", "no exported metric"},
	} {
		got, err := Family(families, tc.name)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Family(%s) = %q, %v; want %q, error containing %q", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// TestLoad checks that the rules come back with the series they select,
// and that what Prometheus refuses fails: bad PromQL, a bad template.
func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	write(t, good, `groups:
- name: g
  rules:
  - alert: A
    expr: sum by (job) (rate(x_total{code=~"5.."}[5m])) / sum by (job) (rate(x_total[5m])) > 0.1 and on() {__name__="y"} > 0
    for: 2m
    labels: {severity: warning}
    annotations: {summary: "{{ $labels.job }}"}
`)
	rules := Load(t, good)
	if len(rules) != 1 {
		t.Fatalf("%d rules, want 1", len(rules))
	}
	r := rules[0]
	if r.Alert != "A" || r.Group != "g" || r.For.Minutes() != 2 || r.Labels["severity"] != "warning" || r.Annotations["summary"] == "" {
		t.Errorf("rule %+v", r)
	}
	if !slices.Equal(r.Metrics, []string{"x_total", "x_total", "y"}) {
		t.Errorf("metrics %v, want x_total twice and y", r.Metrics)
	}
	for name, body := range map[string]string{
		"promql":   "  - alert: A\n    expr: sum(rate(x[5m])\n",
		"template": "  - alert: A\n    expr: x > 0\n    annotations: {summary: \"{{ $labels.job \"}\n",
		"field":    "  - alert: A\n    exp: x > 0\n",
	} {
		path := filepath.Join(dir, name+".yml")
		write(t, path, "groups:\n- name: g\n  rules:\n"+body)
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() { _ = recover() }()
			Load(ft, path)
		}()
		if !ft.failed {
			t.Errorf("a rule file with a bad %s loads", name)
		}
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fatalRecorder records a Fatalf instead of ending the test, which it
// stands for with a panic that the caller recovers.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.failed = true
	panic("fatal")
}

// TestEval checks that an alert fires over series that meet its
// expression, with the labels of the series, and not over others.
func TestEval(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yml")
	write(t, rules, `groups:
- name: g
  rules:
  - alert: Fast
    expr: rate(x_total[5m]) > 1
    for: 1m
    labels: {severity: warning}
`)
	at := time.Unix(1_800_000_000, 0)
	counter := func(instance string, perSecond float64) Series {
		s := Series{Labels: map[string]string{"__name__": "x_total", "instance": instance}}
		for ago := 10 * time.Minute; ago >= 0; ago -= 30 * time.Second {
			s.Samples = append(s.Samples, Sample{float64(at.Add(-ago).UnixMilli()), perSecond * (10*time.Minute - ago).Seconds()})
		}
		return s
	}
	fired := Eval(t, at, []Series{counter("a", 2), counter("b", 0.5)}, rules)
	if got := fired["Fast"]; len(got) != 1 || got[0]["instance"] != "a" {
		t.Errorf("Fast fired for %v, want instance a alone", got)
	}
}
