package minkms

import (
	"io"
	"net/http"

	pb "github.com/minio/kms-go/kms/protobuf"

	"github.com/keep-kms/keep/internal/buildinfo"
	"github.com/keep-kms/keep/internal/service"
)

// version answers GET /version; it needs no client certificate. fips140
// tells newer MinIO KMS clients whether this node's cryptography runs in
// Go's FIPS 140-3 mode.
func (a *API) version(w http.ResponseWriter, r *http.Request, _ service.Caller) {
	writeMessage(w, r, &pb.VersionResponse{
		Version:    buildinfo.Version,
		Commit:     buildinfo.Commit,
		APIVersion: "v1",
		Host:       a.host,
		FIPS140:    buildinfo.FIPS140(),
	})
}

// live answers 200 while the process serves HTTP.
func (a *API) live(w http.ResponseWriter, r *http.Request, _ service.Caller) {
	writeBody(w, http.StatusOK, contentTypeJSON, []byte("{}"))
}

// ready answers 200 when the node can serve reads, or with ?write when it
// can serve writes.
func (a *API) ready(w http.ResponseWriter, r *http.Request, _ service.Caller) {
	ok := a.node.Ready()
	if r.URL.Query().Has("write") {
		ok = ok && a.node.Writable()
	}
	if !ok {
		writeError(w, r, errNotReady)
		return
	}
	writeBody(w, http.StatusOK, contentTypeJSON, []byte("{}"))
}

// scrape serves the node's metrics (OpenMetrics or Prometheus text, by
// Accept); the route admits SysAdmins, or anyone when the cluster setting
// metrics.auth is public (service.Metrics). Scrapes are not audited: they
// come every few seconds.
func (a *API) scrape(w http.ResponseWriter, r *http.Request, _ service.Caller) {
	if a.metrics == nil {
		writeError(w, r, errNotFound)
		return
	}
	body, contentType, err := a.metrics(r.Header)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, contentType, body)
}

// status serves GET /v1/health/status: this node's status, as one entry of
// CLUSTER:STATUS, for SysAdmins (declared in routes.go).
func (a *API) status(w http.ResponseWriter, r *http.Request, _ service.Caller) {
	writeStatus(w, r, a.node.Status())
}

// Unavailable answers while a node starts: alive, but not ready. Clients
// rarely see it: a starting node refuses their handshakes (server.tlsConfig),
// which kms-go recovers from by trying its next server.
func Unavailable() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/health/live" {
			writeBody(w, http.StatusOK, contentTypeJSON, []byte("{}"))
			return
		}
		// Read the body before answering: kms-go reuses a request's buffer
		// for its next request as soon as the reply arrives, while the
		// HTTP/2 transport may still be sending the body from it, so an
		// early reply corrupts a concurrent request of the client (the race
		// detector saw it in TestFiveNodes). The read is bounded by the
		// largest body the API takes and streams into io.Discard.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, MaxCommandBody))
		writeError(w, r, errNotReady)
	})
}
