package minkms

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"

	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// MaxBackup bounds the size of a backup sent to PUT /v1/db, decompressed.
const MaxBackup = state.MaxBackup

// restart serves POST /v1/debug/restart: the whole cluster, this node last,
// or with ?self only this node.
func (a *API) restart(w http.ResponseWriter, r *http.Request, c service.Caller) {
	if err := a.svc.Restart(r.Context(), c, !r.URL.Query().Has("self")); err != nil {
		writeError(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, contentTypeJSON, []byte("{}"))
}

// db serves /v1/db: GET makes a backup, PUT restores one.
func (a *API) db(w http.ResponseWriter, r *http.Request, c service.Caller) {
	if r.Method == http.MethodPut {
		a.writeDB(w, r, c)
	} else {
		a.readDB(w, r, c)
	}
}

// readDB serves GET /v1/db: a gzip-compressed backup.
func (a *API) readDB(w http.ResponseWriter, r *http.Request, c service.Caller) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := a.svc.Backup(c, zw); err != nil {
		writeError(w, r, err)
		return
	}
	if err := zw.Close(); err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	writeBody(w, http.StatusOK, contentTypeBinary, buf.Bytes())
}

// legacyBackupParam is the query parameter of PUT /v1/db that accepts a
// backup of an earlier version of Keep, which carries no MAC.
const legacyBackupParam = "unauthenticated-legacy"

// writeDB serves PUT /v1/db: restores a backup, compressed or not, into a
// fresh cluster. With ?unauthenticated-legacy, a backup of an earlier
// version of Keep is accepted too.
func (a *API) writeDB(w http.ResponseWriter, r *http.Request, c service.Caller) {
	// A backup may be larger than what the server's read timeout allows
	// for: it gets the route's time (its context ends then anyway).
	if deadline, ok := r.Context().Deadline(); ok {
		http.NewResponseController(w).SetReadDeadline(deadline)
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if bytes.HasPrefix(body, []byte{0x1f, 0x8b}) {
		if body, err = gunzip(body); err != nil {
			writeError(w, r, err)
			return
		}
	}
	if err := a.svc.Restore(r.Context(), c, body, r.URL.Query().Has(legacyBackupParam)); err != nil {
		writeError(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, contentTypeJSON, []byte("{}"))
}

func gunzip(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: invalid gzip backup: %v", errMalformed, err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, MaxBackup+1))
	if err != nil {
		return nil, fmt.Errorf("%w: invalid gzip backup: %v", errMalformed, err)
	}
	if len(out) > MaxBackup {
		return nil, errTooLarge
	}
	return out, nil
}
