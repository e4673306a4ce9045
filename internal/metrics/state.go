package metrics

import (
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
	certExpiryDesc = prometheus.NewDesc(namespace+"_tls_certificate_expiry_seconds",
		"Seconds until a server certificate expires; negative once it has.", []string{"cert"}, nil)
	certExpiringDesc = prometheus.NewDesc(namespace+"_tls_certificate_expiring",
		"1 if a server certificate expires within 48 hours (or has), else 0.", []string{"cert"}, nil)
)

// stateCollector reports the state of the node at each scrape, from
// sources the node sets once it has them.
type stateCollector struct {
	mu    sync.Mutex
	raft  func() cluster.RaftStats
	certs func() []Certificate
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

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{raftRoleDesc, raftTermDesc, raftLastIndexDesc, raftCommitDesc,
		raftAppliedDesc, raftContactDesc, certExpiryDesc, certExpiringDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	raft, certs := c.raft, c.certs
	c.mu.Unlock()
	if raft != nil {
		collectRaft(ch, raft())
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
