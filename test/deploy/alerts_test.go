package deploy_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/minio/kms-go/kms"

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

// TestAlertMetricsOnNode starts a node the way the alerts watch one (a
// staleness bound set, an audit sink that fails: /dev/full, failing open so
// the node still serves), makes a few requests, and checks that every
// keep_* series the rules select is in its scrape, and that the series
// the new alerts need report the node's state.
func TestAlertMetricsOnNode(t *testing.T) {
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
	for _, r := range promrules.Load(t, rulesFile) {
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
