package deploy_test

import (
	"bufio"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/minio/kms-go/kms"
	dto "github.com/prometheus/client_model/go"

	"github.com/keep-kms/keep/test/promrules"
	"github.com/keep-kms/keep/test/testnode"
)

// rulesFile and guide are the alert rules and the operator's guide their
// runbook links point into, relative to this package.
const (
	rulesFile = "../../deploy/prometheus/keep-rules.yml"
	guide     = "../../docs/operations.md"
	// runbookBase is how a runbook_url starts: the guide on GitHub.
	runbookBase = "https://github.com/keep-kms/keep/blob/main/docs/operations.md#"
)

// TestAlertRules checks what an operator reads when an alert fires: every
// alert has a severity Alertmanager can route on, a summary and a
// description, a `for` that keeps one bad scrape from paging, and a
// runbook link to a section of docs/operations.md that exists. Prometheus's
// own parser has checked the file (promrules.Load); internal/metrics
// TestAlertRules checks the names against Keep's metrics, and
// TestAlertMetricsOnNode against a running node.
func TestAlertRules(t *testing.T) {
	rules := promrules.Load(t, rulesFile)
	anchors := headingAnchors(t, guide)
	seen := map[string]bool{}
	alerts := 0
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		alerts++
		// Two rules of one name are fine when they are severities of one
		// condition; the same name and severity twice is a copy.
		key := r.Alert + "/" + r.Labels["severity"]
		if seen[key] {
			t.Errorf("alert %s with severity %s twice", r.Alert, r.Labels["severity"])
		}
		seen[key] = true
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
		}
		if r.For <= 0 {
			t.Errorf("alert %s has no for: one scrape pages", r.Alert)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s has no %s", r.Alert, a)
			}
		}
		link := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(link, runbookBase)
		switch {
		case !ok:
			t.Errorf("alert %s: runbook_url %q does not start with %s", r.Alert, link, runbookBase)
		case !anchors[anchor]:
			t.Errorf("alert %s: runbook_url %q: docs/operations.md has no heading #%s", r.Alert, link, anchor)
		}
	}
	if alerts < 6 {
		t.Errorf("%d alerts; the issue asks for no leader, cut-off nodes, audit, certificates, disk and error rates", alerts)
	}
}

// TestAlertsOnNode starts a node the way the alerts watch one (a
// staleness bound set, an audit sink that fails: /dev/full, failing open so
// the node still serves), makes a few requests, and checks that every
// keep_* series the rules select is in its scrape, and that the series
// the new alerts need report the node's state. Then it evaluates the
// alerts over that scrape, and over the faults each alert is for, made
// from it (alertScenarios).
func TestAlertsOnNode(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skipf("no /dev/full to make the audit sink fail: %v", err)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "keep.yaml")
	if err := os.WriteFile(config, []byte(`version: v1
cluster:
  max_staleness: 45s
audit:
  sink: /dev/full
  fail_open: true
`), 0o600); err != nil {
		t.Fatal(err)
	}
	n := testnode.Start(t, testnode.Options{Config: config})
	c := n.RootClient(t)
	ctx := t.Context()
	if err := c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "alerts"}); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if _, err := c.GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: "missing", Length: 32}); testnode.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("GenerateKey of a missing key: %v, want 404", err)
	}

	families := promrules.Scrape(t, testnode.HTTPClient(t, n.Root, 30*time.Second), n.Endpoint()+"/v1/health/metrics")
	rules := promrules.Load(t, rulesFile)
	for _, r := range rules {
		for _, name := range r.Metrics {
			if !strings.HasPrefix(name, "keep_") {
				continue // up, node_exporter's, the kubelet's
			}
			if _, err := promrules.Family(families, name); err != nil {
				t.Errorf("alert %s selects %s, which the node does not export: %v", r.Alert, name, err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"keep_audit_sink_failing", nil, 1},
		{"keep_cluster_max_staleness_seconds", nil, 45},
		{"keep_raft_log_fault", map[string]string{"kind": "disk_full"}, 0},
		{"keep_raft_log_fault", map[string]string{"kind": "disk_error"}, 0},
		{"keep_state_tampered", nil, 0},
		{"keep_raft_role", map[string]string{"role": "leader"}, 1},
		{"keep_raft_last_contact_seconds", nil, 0},
		{"keep_http_requests_total", map[string]string{"api": "minkms", "code": "404"}, 1},
	} {
		got, ok := promrules.Value(families, tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (present: %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	alertScenarios(t, rules, families, n.Addr)
}

// change is what a scenario does to the series of a scrape: the series
// named name whose labels include labels take the values of value (how
// long before the evaluation → the value); a series that matches none is
// added, with the node's job and instance labels.
type change struct {
	name   string
	labels map[string]string
	value  func(ago time.Duration) float64
}

// constant is a series that holds v.
func constant(v float64) func(time.Duration) float64 {
	return func(time.Duration) float64 { return v }
}

// counting is a counter that started from 0 an hour ago and counts
// perSecond.
func counting(perSecond float64) func(time.Duration) float64 {
	return func(ago time.Duration) float64 { return perSecond * (time.Hour - ago).Seconds() }
}

// stepping is a gauge that goes up by one every period.
func stepping(period time.Duration) func(time.Duration) float64 {
	return func(ago time.Duration) float64 { return float64((time.Hour - ago) / period) }
}

// alertScenarios evaluates the alerts with Prometheus's engine over an
// hour of the series of a node's scrape (families: every counter and
// gauge as it was scraped, job "keep", and up), as scraped and changed as
// each fault would change them, and checks that exactly the alerts meant
// for the fault fire (before their `for`, which is not evaluated).
func alertScenarios(t *testing.T, rules []promrules.Rule, families map[string]*dto.MetricFamily, instance string) {
	target := map[string]string{"job": "keep", "instance": instance}
	node := map[string]string{"job": "node", "instance": instance, "mountpoint": "/var/lib/keep"}
	pvc := map[string]string{"job": "kubelet", "persistentvolumeclaim": "data-keep-0"}
	commit, _ := promrules.Value(families, "keep_raft_commit_index", nil)
	// Every scenario's node is idle, and has applied what it committed (a
	// scrape may catch raft's applied index a moment behind); all but the
	// first have an audit sink that works (the scraped node's fails on
	// purpose).
	idle := change{"keep_raft_applied_index", nil, constant(commit)}
	auditWorks := change{"keep_audit_sink_failing", nil, constant(0)}
	covered := map[string]bool{}
	for _, sc := range []struct {
		name    string
		changes []change
		want    []string
	}{
		{"as scraped: the audit sink fails", nil, []string{"KeepAuditSinkFailing"}},
		{"healthy", []change{auditWorks}, nil},
		{"no leader", []change{
			{"keep_raft_role", map[string]string{"role": "leader"}, constant(0)},
			{"keep_raft_role", map[string]string{"role": "candidate"}, constant(1)},
			{"keep_raft_last_contact_seconds", nil, constant(20)},
		}, []string{"KeepNoLeader", "KeepNodeCutOff"}},
		{"cut off within the staleness bound", []change{
			{"keep_raft_last_contact_seconds", nil, constant(20)},
		}, []string{"KeepNodeCutOff"}},
		{"cut off past the staleness bound", []change{
			{"keep_raft_last_contact_seconds", nil, constant(60)},
		}, []string{"KeepNodeCutOff", "KeepNodeStale"}},
		{"cut off without a staleness bound", []change{
			{"keep_raft_last_contact_seconds", nil, constant(600)},
			{"keep_cluster_max_staleness_seconds", nil, constant(0)},
		}, []string{"KeepNodeCutOff"}},
		{"down", []change{{"up", nil, constant(0)}}, []string{"KeepNodeDown"}},
		{"restarting", []change{{"process_start_time_seconds", nil, stepping(5 * time.Minute)}}, []string{"KeepNodeRestarting"}},
		{"elections", []change{{"keep_raft_term", nil, stepping(5 * time.Minute)}}, []string{"KeepFrequentElections"}},
		{"tampered", []change{{"keep_state_tampered", nil, constant(1)}}, []string{"KeepStateTampered"}},
		{"apply stuck", []change{{"keep_raft_commit_index", nil, counting(1)}}, []string{"KeepApplyStuck"}},
		{"disk full", []change{{"keep_raft_log_fault", map[string]string{"kind": "disk_full"}, constant(1)}}, []string{"KeepDiskFull"}},
		{"disk error", []change{{"keep_raft_log_fault", map[string]string{"kind": "disk_error"}, constant(1)}}, []string{"KeepDiskError"}},
		{"disk 90% full", []change{
			{"node_filesystem_avail_bytes", node, constant(10)},
			{"node_filesystem_size_bytes", node, constant(100)},
		}, []string{"KeepDiskNearlyFull"}},
		{"disk 97% full", []change{
			{"node_filesystem_avail_bytes", node, constant(3)},
			{"node_filesystem_size_bytes", node, constant(100)},
		}, []string{"KeepDiskNearlyFull", "KeepDiskAlmostFull"}},
		{"disk 50% full", []change{
			{"node_filesystem_avail_bytes", node, constant(50)},
			{"node_filesystem_size_bytes", node, constant(100)},
		}, nil},
		{"volume 90% full", []change{
			{"kubelet_volume_stats_available_bytes", pvc, constant(10)},
			{"kubelet_volume_stats_capacity_bytes", pvc, constant(100)},
		}, []string{"KeepVolumeNearlyFull"}},
		{"certificate expires in 10 days", []change{
			{"keep_tls_certificate_expiry_seconds", nil, constant(10 * 86400)},
		}, []string{"KeepCertificateExpiresSoon"}},
		{"certificate expires in 2 days", []change{
			{"keep_tls_certificate_expiry_seconds", nil, constant(2 * 86400)},
		}, []string{"KeepCertificateExpiresSoon", "KeepCertificateExpires"}},
		{"2% server errors", []change{
			{"keep_http_requests_total", map[string]string{"api": "minkms", "code": "200"}, counting(98)},
			{"keep_http_requests_total", map[string]string{"api": "minkms", "code": "500"}, counting(2)},
		}, []string{"KeepErrorRate"}},
		{"10% refused with 503", []change{
			{"keep_http_requests_total", map[string]string{"api": "kes", "code": "200"}, counting(90)},
			{"keep_http_requests_total", map[string]string{"api": "kes", "code": "503"}, counting(10)},
		}, []string{"KeepErrorRate", "KeepHighErrorRate", "KeepRefusingRequests"}},
		{"server errors between the nodes only", []change{
			{"keep_http_requests_total", map[string]string{"api": "minkms", "code": "200"}, counting(10)},
			{"keep_http_requests_total", map[string]string{"api": "rpc", "code": "503"}, counting(10)},
		}, nil},
		{"a few errors on an idle node", []change{
			{"keep_http_requests_total", map[string]string{"api": "minkms", "code": "500"}, counting(0.01)},
		}, nil},
	} {
		changes := []change{idle}
		if sc.name != "as scraped: the audit sink fails" {
			changes = append(changes, auditWorks)
		}
		changes = append(changes, sc.changes...)
		fired := promrules.Eval(t, evalTime, seriesOf(families, target, changes), rulesFile)
		var got []string
		for alert, elems := range fired {
			if len(elems) > 0 {
				got = append(got, alert)
			}
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(sc.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s: alerts %v fire, want %v", sc.name, got, want)
		}
		for _, a := range got {
			covered[a] = true
		}
	}
	for _, r := range rules {
		if r.Alert != "" && !covered[r.Alert] {
			t.Errorf("no scenario makes alert %s fire", r.Alert)
		}
	}
}

// evalTime is when the scenarios are evaluated; their series span the
// hour before.
var evalTime = time.Unix(1_800_000_000, 0)

// seriesOf returns an hour of series, a sample every 30 s, of the
// counters and gauges of families with the target's labels, and up, with
// changes made (see change).
func seriesOf(families map[string]*dto.MetricFamily, target map[string]string, changes []change) []promrules.Series {
	type series struct {
		labels map[string]string
		value  func(time.Duration) float64
	}
	withTarget := func(name string, labels map[string]string) map[string]string {
		l := maps.Clone(target)
		maps.Copy(l, labels)
		l["__name__"] = name
		return l
	}
	all := []*series{{withTarget("up", nil), constant(1)}}
	for name, f := range families {
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			var v float64
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			case m.Untyped != nil:
				v = m.Untyped.GetValue()
			default:
				continue // histograms: no rule reads them (an alert on one would fire in no scenario)
			}
			all = append(all, &series{withTarget(name, labels), constant(v)})
		}
	}
	for _, c := range changes {
		matched := false
		for _, s := range all {
			if s.labels["__name__"] != c.name {
				continue
			}
			if includes(s.labels, c.labels) {
				s.value, matched = c.value, true
			}
		}
		if !matched {
			labels := withTarget(c.name, c.labels)
			if c.labels["job"] != "" {
				labels = maps.Clone(c.labels)
				labels["__name__"] = c.name
			}
			all = append(all, &series{labels, c.value})
		}
	}
	out := make([]promrules.Series, 0, len(all))
	for _, s := range all {
		ps := promrules.Series{Labels: s.labels}
		for ago := time.Hour; ago >= 0; ago -= 30 * time.Second {
			ps.Samples = append(ps.Samples, promrules.Sample{float64(evalTime.Add(-ago).UnixMilli()), s.value(ago)})
		}
		out = append(out, ps)
	}
	return out
}

// includes reports whether labels has every label of want.
func includes(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// headingAnchors returns the anchors GitHub gives the headings of the
// Markdown file at path (outside code blocks).
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	anchors := map[string]bool{}
	count := map[string]int{}
	inCode := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		a := slug(strings.TrimLeft(line, "#"))
		if k := count[a]; k > 0 {
			anchors[fmt.Sprintf("%s-%d", a, k)] = true
		} else {
			anchors[a] = true
		}
		count[a]++
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return anchors
}

// slug is GitHub's anchor of a heading: lower case, letters, digits,
// hyphens and underscores kept, spaces made hyphens, the rest dropped.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		" KeepNoLeader":                      "keepnoleader",
		" Backups, and restore drills":       "backups-and-restore-drills",
		" Disaster recovery: `keep edit`":    "disaster-recovery-keep-edit",
		" Sizing (from docs/PERFORMANCE.md)": "sizing-from-docsperformancemd",
		" max_staleness — the bound":         "max_staleness--the-bound",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}
