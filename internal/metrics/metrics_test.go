package metrics

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/usage"
	"github.com/keep-kms/keep/test/promrules"
)

// exercised returns metrics in which every family has samples.
func exercised(t *testing.T) *Metrics {
	t.Helper()
	m := New()
	r := m.Requests(APIMinKMS)
	r.Start()
	r.Done(http.StatusOK, 3*time.Millisecond, 100, 2000)
	m.Requests(APIKES).Start()
	m.CountCommands([]audit.Event{
		{API: "minkms", Command: "KEY:GENERATE", Status: 200},
		{API: "minkms", Command: "KEY:GENERATE", Status: 200},
		{API: "minkms", Command: "KEY:DECRYPT", Status: 400},
		{API: "kes", Command: "/v1/key/generate", Status: 503},
	})
	m.SetRaft(func() cluster.RaftStats {
		return cluster.RaftStats{Role: "Follower", Term: 3, LastIndex: 12, CommitIndex: 11, AppliedIndex: 10, LastContact: 1500 * time.Millisecond}
	})
	m.SetMaxStaleness(func() time.Duration { return 30 * time.Second })
	m.SetAuditFailing(func() bool { return true })
	m.SetCertificates(func() []Certificate {
		return []Certificate{
			{Name: "a.crt", NotAfter: time.Now().Add(24 * time.Hour)},
			{Name: "b.crt", NotAfter: time.Now().Add(30 * 24 * time.Hour)},
		}
	})
	m.SetKeyUsage(func() []usage.KeyUsage {
		return []usage.KeyUsage{
			{Enclave: "e", Name: "used", Usage: usage.Usage{LastDecrypt: time.Unix(1796551200, 0), Decrypts30d: 7, LastGenerate: time.Unix(1796551100, 0), Generates30d: 2}},
			{Enclave: "e", Name: "generated", Usage: usage.Usage{LastGenerate: time.Unix(1796551100, 0), Generates30d: 1}},
		}
	})
	return m
}

// scrape encodes m as Prometheus text and parses it.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	body, contentType, err := m.Encode(http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(contentType, "text/plain") {
		t.Errorf("content type %q, want text/plain", contentType)
	}
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, body)
	}
	return families
}

func TestMetrics(t *testing.T) {
	families := scrape(t, exercised(t))
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"keep_http_requests_total", map[string]string{"api": "minkms", "code": "200"}, 1},
		{"keep_http_requests_in_flight", map[string]string{"api": "minkms"}, 0},
		{"keep_http_requests_in_flight", map[string]string{"api": "kes"}, 1},
		{"keep_http_request_duration_seconds", map[string]string{"api": "minkms"}, 1},
		{"keep_http_request_size_bytes", map[string]string{"api": "minkms"}, 1},
		{"keep_http_response_size_bytes", map[string]string{"api": "minkms"}, 1},
		{"keep_commands_total", map[string]string{"api": "minkms", "command": "KEY:GENERATE", "outcome": OutcomeOK}, 2},
		{"keep_commands_total", map[string]string{"api": "minkms", "command": "KEY:DECRYPT", "outcome": OutcomeClientError}, 1},
		{"keep_commands_total", map[string]string{"api": "kes", "command": "/v1/key/generate", "outcome": OutcomeServerError}, 1},
		{"keep_raft_role", map[string]string{"role": "follower"}, 1},
		{"keep_raft_role", map[string]string{"role": "leader"}, 0},
		{"keep_raft_term", nil, 3},
		{"keep_raft_last_log_index", nil, 12},
		{"keep_raft_commit_index", nil, 11},
		{"keep_raft_applied_index", nil, 10},
		{"keep_raft_last_contact_seconds", nil, 1.5},
		{"keep_raft_log_fault", map[string]string{"kind": "disk_full"}, 0},
		{"keep_raft_log_fault", map[string]string{"kind": "disk_error"}, 0},
		{"keep_state_tampered", nil, 0},
		{"keep_cluster_max_staleness_seconds", nil, 30},
		{"keep_audit_sink_failing", nil, 1},
		{"keep_tls_certificate_expiring", map[string]string{"cert": "a.crt"}, 1},
		{"keep_tls_certificate_expiring", map[string]string{"cert": "b.crt"}, 0},
		{"keep_build_info", nil, 1},
		{"keep_key_decrypts_30d", map[string]string{"enclave": "e", "key": "used"}, 7},
		{"keep_key_generates_30d", map[string]string{"enclave": "e", "key": "used"}, 2},
		{"keep_key_last_decrypt_timestamp_seconds", map[string]string{"enclave": "e", "key": "used"}, 1796551200},
		{"keep_key_last_generate_timestamp_seconds", map[string]string{"enclave": "e", "key": "used"}, 1796551100},
		{"keep_key_decrypts_30d", map[string]string{"enclave": "e", "key": "generated"}, 0},
	} {
		got, ok := promrules.Value(families, tc.name, tc.labels)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (present: %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if _, ok := promrules.Value(families, "keep_key_last_decrypt_timestamp_seconds", map[string]string{"key": "generated"}); ok {
		t.Error("a last decrypt of a key that never decrypted")
	}
	if left, _ := promrules.Value(families, "keep_tls_certificate_expiry_seconds", map[string]string{"cert": "a.crt"}); left < 23*3600 || left > 24*3600 {
		t.Errorf("keep_tls_certificate_expiry_seconds{cert=a.crt} = %v, want about 86400", left)
	}
	for _, name := range []string{"process_cpu_seconds_total", "go_goroutines"} {
		if _, ok := families[name]; !ok {
			t.Errorf("no %s: the process and Go collectors are missing", name)
		}
	}
}

func TestEncodeOpenMetrics(t *testing.T) {
	body, contentType, err := New().Encode(http.Header{"Accept": {"application/openmetrics-text;version=1.0.0"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(contentType, "application/openmetrics-text") {
		t.Errorf("content type %q, want OpenMetrics", contentType)
	}
	if !bytes.HasSuffix(body, []byte("# EOF\n")) {
		t.Errorf("OpenMetrics body does not end with # EOF")
	}
}

// TestFaults checks that keep_raft_log_fault tells a full disk from a
// failing one, and keep_state_tampered a node that refused a record, and
// that they show nothing while the node is well.
func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		stats                     cluster.RaftStats
		full, otherwise, tampered float64
	}{
		{"well", cluster.RaftStats{}, 0, 0, 0},
		{"full", cluster.RaftStats{LogFault: fmt.Errorf("writing segment: %w", cluster.ErrDiskFull)}, 1, 0, 0},
		{"failing", cluster.RaftStats{LogFault: fmt.Errorf("fsync: %w", cluster.ErrDiskFailed)}, 0, 1, 0},
		{"tampered", cluster.RaftStats{Tampered: fmt.Errorf("%w: entry 7", cluster.ErrTampered)}, 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			m.SetRaft(func() cluster.RaftStats { s := tc.stats; s.Role = "Follower"; return s })
			families := scrape(t, m)
			for _, want := range []struct {
				name   string
				labels map[string]string
				value  float64
			}{
				{"keep_raft_log_fault", map[string]string{"kind": "disk_full"}, tc.full},
				{"keep_raft_log_fault", map[string]string{"kind": "disk_error"}, tc.otherwise},
				{"keep_state_tampered", nil, tc.tampered},
			} {
				if got, ok := promrules.Value(families, want.name, want.labels); !ok || got != want.value {
					t.Errorf("%s%v = %v (present: %v), want %v", want.name, want.labels, got, ok, want.value)
				}
			}
		})
	}
}

// TestAlertRules checks that the alert rules of deploy/prometheus select
// only metrics that Keep exports, by the names of their series (a
// counter's _total, a histogram's _bucket), as TestDashboard does for the
// dashboard. test/deploy checks the rest of the file, and the same names
// on a running node.
func TestAlertRules(t *testing.T) {
	families := scrape(t, exercised(t))
	rules := promrules.Load(t, "../../deploy/prometheus/keep-rules.yml")
	used := map[string]bool{}
	for _, r := range rules {
		resolve(t, families, "alert "+r.Alert, r.Metrics, used)
	}
	// What the issue asks alerts for: no leader, a node cut off longer
	// than the staleness bound, a failing audit sink, expiring
	// certificates, a full disk, error rates.
	wantUsed(t, used, "no alert watches", "keep_raft_role", "keep_raft_last_contact_seconds",
		"keep_cluster_max_staleness_seconds", "keep_audit_sink_failing", "keep_tls_certificate_expiry_seconds",
		"keep_raft_log_fault", "keep_state_tampered", "keep_http_requests_total")
}

// keepSeries matches the names of the series Keep exports: its own, and
// those of the process and Go collectors.
var keepSeries = regexp.MustCompile(`^(?:keep|process|go)_[a-z0-9_]+$`)

// resolve resolves the series names a query selects (where names the
// query) to the families Keep exports, reports those it does not, and
// records the families in used. Names of other exporters are skipped.
func resolve(t *testing.T, families map[string]*dto.MetricFamily, where string, names []string, used map[string]bool) {
	t.Helper()
	for _, n := range names {
		if !keepSeries.MatchString(n) {
			continue // up, node_exporter's and the kubelet's metrics
		}
		family, err := promrules.Family(families, n)
		if err != nil {
			t.Errorf("%s selects %s: %v", where, n, err)
		}
		used[family] = true
	}
}

// wantUsed reports each of the families names that used lacks.
func wantUsed(t *testing.T, used map[string]bool, complaint string, names ...string) {
	t.Helper()
	for _, n := range names {
		if !used[n] {
			t.Errorf("%s %s", complaint, n)
		}
	}
}

// TestDashboard checks that the Grafana dashboard queries only metrics
// that exist, and shows the ones the issue asks for.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile("../../docs/grafana/keep.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("keep.json: %v", err)
	}
	families := scrape(t, exercised(t))
	name := regexp.MustCompile(`\b(?:keep|process|go)_[a-z0-9_]+`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			resolve(t, families, fmt.Sprintf("panel %q", p.Title), name.FindAllString(target.Expr, -1), used)
		}
	}
	wantUsed(t, used, "the dashboard shows no", "keep_http_requests_total", "keep_http_request_duration_seconds",
		"keep_http_requests_in_flight", "keep_commands_total", "keep_raft_role", "keep_raft_commit_index",
		"keep_raft_last_contact_seconds", "keep_tls_certificate_expiry_seconds", "keep_key_decrypts_30d",
		"keep_raft_log_fault", "keep_state_tampered", "keep_audit_sink_failing")
}
