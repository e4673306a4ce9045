package server

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/service"
)

// lifecycleTick is how often the leader looks for key versions whose
// deletion or rotation is due: the precision of both.
const lifecycleTick = time.Second

// recordLifecycle writes the audit record and the log line of what the
// leader did to a key on its own.
func recordLifecycle(log *audit.Log, host string, ev service.LifecycleEvent) {
	e := audit.Event{
		Time: time.Now().UTC(), Node: host, API: "cluster", Command: ev.Command,
		Enclave: ev.Enclave, Resource: ev.Name, Status: http.StatusOK,
	}
	attrs := []any{"command", ev.Command, "enclave", ev.Enclave, "key", ev.Name, "version", ev.Version}
	if ev.Err != nil {
		e.Status, e.Error = http.StatusInternalServerError, ev.Err.Error()
		slog.Error("key lifecycle", append(attrs, "error", ev.Err)...)
	} else {
		slog.Info("key lifecycle", attrs...)
	}
	if err := log.Record(e); err != nil {
		slog.Error("key lifecycle: audit record not written", append(attrs, "error", err)...)
	}
}
