package metrics

import (
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keep-kms/keep/internal/cluster"
)

// ExpiryWarning is how long before a TLS certificate expires Keep warns of
// it: in the server log and with keep_tls_certificate_expiring.
const ExpiryWarning = 48 * time.Hour

// Certificate is a TLS certificate a node serves.
type Certificate struct {
	Name     string // its file, or "self-signed"
	NotAfter time.Time
}

// raftRoles are the values of the role label of keep_raft_role.
var raftRoles = []string{"leader", "follower", "candidate", "shutdown"}

var (
	raftRoleDesc = prometheus.NewDesc(namespace+"_raft_role",
		"1 for the raft role this node has now, 0 for the others.", []string{"role"}, nil)
	raftTermDesc = prometheus.NewDesc(namespace+"_raft_term",
		"The current raft term.", nil, nil)
	raftLastIndexDesc = prometheus.NewDesc(namespace+"_raft_last_log_index",
		"Index of the last entry in this node's raft log.", nil, nil)
	raftCommitDesc = prometheus.NewDesc(namespace+"_raft_commit_index",
		"Index of the last raft entry known to be committed.", nil, nil)
	raftAppliedDesc = prometheus.NewDesc(namespace+"_raft_applied_index",
		"Index of the last raft entry applied to this node's state.", nil, nil)
	raftContactDesc = prometheus.NewDesc(namespace+"_raft_last_contact_seconds",
		"Seconds since this node last heard from the leader; 0 on the leader, absent if never.", nil, nil)
	raftLogFaultDesc = prometheus.NewDesc(namespace+"_raft_log_fault",
		"1 while this node cannot write its raft log and refuses writes with 503, by kind (disk_full: no space or quota left; disk_error: a write or fsync failed), else 0.", []string{"kind"}, nil)
	stateTamperedDesc = prometheus.NewDesc(namespace+"_state_tampered",
		"1 once this node found a record of its raft log or a snapshot that is not authentic: it applies nothing more and answers every request with 500 until it starts on a good data directory; else 0.", nil, nil)
	maxStalenessDesc = prometheus.NewDesc(namespace+"_cluster_max_staleness_seconds",
		"The staleness bound (cluster.max_staleness): a node cut off from the leader for longer refuses reads; 0 if it serves them for ever.", nil, nil)
	auditFailingDesc = prometheus.NewDesc(namespace+"_audit_sink_failing",
		"1 while the audit sink cannot be written (requests are refused, or their records lost with audit.fail_open), else 0.", nil, nil)
	certExpiryDesc = prometheus.NewDesc(namespace+"_tls_certificate_expiry_seconds",
		"Seconds until a server certificate expires; negative once it has.", []string{"cert"}, nil)
	certExpiringDesc = prometheus.NewDesc(namespace+"_tls_certificate_expiring",
		"1 if a server certificate expires within 48 hours (or has), else 0.", []string{"cert"}, nil)
)

// stateCollector reports the state of the node at each scrape, from
// sources the node sets once it has them.
type stateCollector struct {
	mu           sync.Mutex
	raft         func() cluster.RaftStats
	certs        func() []Certificate
	staleness    func() time.Duration
	auditFailing func() bool
}

// SetRaft makes the metrics report the raft state f returns.
func (m *Metrics) SetRaft(f func() cluster.RaftStats) {
	m.state.mu.Lock()
	defer m.state.mu.Unlock()
	m.state.raft = f
}

// SetCertificates makes the metrics report the expiry of the certificates
// f returns.
func (m *Metrics) SetCertificates(f func() []Certificate) {
	m.state.mu.Lock()
	defer m.state.mu.Unlock()
	m.state.certs = f
}

// SetMaxStaleness makes the metrics report the staleness bound f returns,
// so that an alert can compare keep_raft_last_contact_seconds with it.
func (m *Metrics) SetMaxStaleness(f func() time.Duration) {
	m.state.mu.Lock()
	defer m.state.mu.Unlock()
	m.state.staleness = f
}

// SetAuditFailing makes the metrics report whether the audit sink is
// failing, as f says (audit.Log.Failing).
func (m *Metrics) SetAuditFailing(f func() bool) {
	m.state.mu.Lock()
	defer m.state.mu.Unlock()
	m.state.auditFailing = f
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{raftRoleDesc, raftTermDesc, raftLastIndexDesc, raftCommitDesc,
		raftAppliedDesc, raftContactDesc, raftLogFaultDesc, stateTamperedDesc, maxStalenessDesc, auditFailingDesc, certExpiryDesc, certExpiringDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	raft, certs, staleness, auditFailing := c.raft, c.certs, c.staleness, c.auditFailing
	c.mu.Unlock()
	if raft != nil {
		collectRaft(ch, raft())
	}
	if staleness != nil {
		ch <- prometheus.MustNewConstMetric(maxStalenessDesc, prometheus.GaugeValue, staleness().Seconds())
	}
	if auditFailing != nil {
		ch <- prometheus.MustNewConstMetric(auditFailingDesc, prometheus.GaugeValue, boolValue(auditFailing()))
	}
	if certs != nil {
		collectCertificates(ch, certs(), time.Now())
	}
}

func collectRaft(ch chan<- prometheus.Metric, s cluster.RaftStats) {
	role := strings.ToLower(s.Role)
	for _, r := range raftRoles {
		ch <- prometheus.MustNewConstMetric(raftRoleDesc, prometheus.GaugeValue, boolValue(r == role), r)
	}
	ch <- prometheus.MustNewConstMetric(raftTermDesc, prometheus.GaugeValue, float64(s.Term))
	ch <- prometheus.MustNewConstMetric(raftLastIndexDesc, prometheus.GaugeValue, float64(s.LastIndex))
	ch <- prometheus.MustNewConstMetric(raftCommitDesc, prometheus.GaugeValue, float64(s.CommitIndex))
	ch <- prometheus.MustNewConstMetric(raftAppliedDesc, prometheus.GaugeValue, float64(s.AppliedIndex))
	if s.LastContact >= 0 {
		ch <- prometheus.MustNewConstMetric(raftContactDesc, prometheus.GaugeValue, s.LastContact.Seconds())
	}
	// Both kinds are always there, so that an alert on the fault has a
	// series to watch before the first one.
	full := errors.Is(s.LogFault, cluster.ErrDiskFull)
	ch <- prometheus.MustNewConstMetric(raftLogFaultDesc, prometheus.GaugeValue, boolValue(full), "disk_full")
	ch <- prometheus.MustNewConstMetric(raftLogFaultDesc, prometheus.GaugeValue, boolValue(s.LogFault != nil && !full), "disk_error")
	ch <- prometheus.MustNewConstMetric(stateTamperedDesc, prometheus.GaugeValue, boolValue(s.Tampered != nil))
}

func collectCertificates(ch chan<- prometheus.Metric, certs []Certificate, now time.Time) {
	for _, c := range certs {
		left := c.NotAfter.Sub(now)
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, left.Seconds(), c.Name)
		ch <- prometheus.MustNewConstMetric(certExpiringDesc, prometheus.GaugeValue, boolValue(left < ExpiryWarning), c.Name)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
