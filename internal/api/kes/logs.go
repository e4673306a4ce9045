package kes

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/logging"
)

// streamBuffer is how many events a log stream holds for a slow client;
// a client further behind misses events.
const streamBuffer = 256

// The log streams span every enclave and the whole node, so only SysAdmins
// may follow them (declared in routes.go), as `keep logs` (/v1/debug/log)
// on the MinIO KMS API.

// auditLog serves GET /v1/log/audit: the audit events recorded from now
// on, of both APIs, one JSON object per line (spec §6.2), flushed per
// event, until the client goes away.
func (a *API) auditLog(r *request) (any, error) {
	return stream(func(w http.ResponseWriter, r *request) {
		events, cancel := a.audit.Subscribe(streamBuffer)
		defer cancel()
		follow(a, w, r, events, auditLine, a.metrics.auditEvents)
	}), nil
}

// errorLog serves GET /v1/log/error: the server log records from now on
// (those its level lets through), each as {"message": "<slog text line>"}
// (spec §6.3), flushed per record, until the client goes away.
func (a *API) errorLog(r *request) (any, error) {
	return stream(func(w http.ResponseWriter, r *request) {
		_, records, cancel := a.logs.Subscribe(streamBuffer, time.Time{})
		defer cancel()
		follow(a, w, r, records, errorLine, a.metrics.errorEvents)
	}), nil
}

// follow writes the values of c to w as ndjson until the client goes away
// or the server shuts down.
func follow[T any](a *API, w http.ResponseWriter, r *request, c <-chan T, line func(T) any, written prometheus.Counter) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// The request has been read: the server's read deadline must not end
	// the stream (over HTTP/1.1 it would cancel the request's context).
	rc.SetReadDeadline(time.Time{})
	if rc.Flush() != nil {
		return
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.done:
			return
		case v := <-c:
			if enc.Encode(line(v)) != nil || rc.Flush() != nil {
				return
			}
			written.Inc()
		}
	}
}

// auditLine is an audit event as KES streams it. The path is the KES path
// of the operation (see pathOf), the identity its hex spelling, and the
// response time in nanoseconds: the client reads a Go time.Duration (KES
// sends milliseconds).
func auditLine(e audit.Event) any {
	type request struct {
		IP       string `json:"ip,omitempty"`
		Path     string `json:"path"`
		Identity string `json:"identity,omitempty"`
	}
	type response struct {
		Code int   `json:"code"`
		Time int64 `json:"time"`
	}
	return struct {
		Time     time.Time `json:"time"`
		Request  request   `json:"request"`
		Response response  `json:"response"`
	}{
		Time:     e.Time,
		Request:  request{IP: e.IP, Path: pathOf(e.Command, e.Resource), Identity: identity.Hex(e.Identity)},
		Response: response{Code: e.Status, Time: int64(e.Latency)},
	}
}

// errorLine is a server log record as KES streams it.
func errorLine(rec logging.Record) any {
	return struct {
		Message string `json:"message"`
	}{rec.Text}
}
