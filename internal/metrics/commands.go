package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keep-kms/keep/internal/audit"
)

// Outcomes of a command, as the outcome label names them.
const (
	OutcomeOK          = "ok"           // 2xx
	OutcomeClientError = "client_error" // 4xx: refused, not found, malformed
	OutcomeServerError = "server_error" // 5xx: the node could not serve it
)

func newCommandCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "commands_total",
		Help: "Commands run, by API, command (KEY:GENERATE, KEY:DECRYPT, …, and admin routes such as NODE:CONFIG) and outcome.",
	}, []string{"api", "command", "outcome"})
}

// CountCommands counts the commands of audit events. It is an audit
// observer (audit.Log.Observe): every command a node runs is recorded
// there, whether or not an audit sink is configured.
func (m *Metrics) CountCommands(events []audit.Event) {
	for i := range events {
		e := &events[i]
		k := commandKey{e.API, e.Command, outcome(e.Status)}
		c, ok := m.resolved.Load(k)
		if !ok {
			c, _ = m.resolved.LoadOrStore(k, m.commands.WithLabelValues(k.api, k.command, k.outcome))
		}
		c.(prometheus.Counter).Inc()
	}
}

// commandKey names a command counter. The set is small and bounded: the
// APIs' command names and route names, times three outcomes.
type commandKey struct{ api, command, outcome string }

// outcome classifies an HTTP status.
func outcome(status int) string {
	switch {
	case status >= 500:
		return OutcomeServerError
	case status >= 400:
		return OutcomeClientError
	}
	return OutcomeOK
}
