package kes

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

func TestStatusOf(t *testing.T) {
	generate := findRoute(t, "/v1/key/generate/")
	full := &cluster.StorageError{Host: "10.0.0.1:7373", Err: syscall.ENOSPC}
	failed := &cluster.StorageError{Host: "10.0.0.2:7373", Err: fmt.Errorf("fsync: %w", syscall.EIO)}
	tests := []struct {
		err    error
		status int
		msg    string
	}{
		// The pairs MinIO compares byte for byte (spec §2.7).
		{service.ErrPermission, 403, "not authorized: insufficient permissions"},
		{state.ErrKeyExists, 400, "key already exists"},
		{state.ErrKeyNotFound, 404, "key does not exist"},
		{crypto.ErrDecrypt, 400, "decryption failed: ciphertext is not authentic"},
		// Wrapped, they still send the KES text, not the context.
		{fmt.Errorf("create k: %w", state.ErrKeyExists), 400, "key already exists"},
		{fmt.Errorf("policy p: %w", state.ErrPolicyNotFound), 404, "policy does not exist"},
		{state.ErrIdentityNotFound, 404, "identity does not exist"},
		{state.ErrEnclaveNotFound, 404, "enclave does not exist"},
		{errUnavailable, 502, "key store is unavailable"},
		{fmt.Errorf("%w: %w", errUnreachable, cluster.ErrStale), 504, "key store is not reachable"},
		{fmt.Errorf("%w: disk full", audit.ErrUnavailable), 503, "audit log is unavailable"},
		{context.DeadlineExceeded, 503, "request timed out"},
		// Explained errors carry their own text.
		{fmt.Errorf("%w: key type %q", state.ErrInvalidArgument, "x"), 400, `invalid argument: key type "x"`},
		{cluster.ErrNoLeader, 503, cluster.ErrNoLeader.Error()},
		{full, 503, full.Error()},
		{failed, 503, failed.Error()},
		// Request errors.
		{errMethod("GET", "PUT"), 405, "received method 'GET' expected 'PUT'"},
		{errKeyName("a.b"), 400, "key name 'a.b' is empty, too long or contains invalid characters"},
		{errPolicyName(""), 400, "policy name '' is empty, too long or contains invalid characters"},
		{errIdentity("-x"), 400, "identity '-x' is empty, too long or contains invalid characters"},
		{errPattern("a*b"), 400, "listing pattern 'a*b' is empty, too long or is invalid"},
		{errBody, 400, "invalid request body"},
		{errImportBody, 400, "invalid import key request body"},
		{errAlgorithm("AES128"), 406, "algorithm 'AES128' is not supported"},
		{errKeySize("AES256"), 406, "invalid key size for 'AES256'"},
		{errInsecure, 400, "insecure connection: TLS is required"},
		{errNoCert, 400, "tls: client certificate is required"},
		// Anything else is the route's failure, without details.
		{errors.New("disk on fire"), 500, "failed to generate encryption key"},
		// Key material that does not unseal is the server's failure, not
		// an invalid ciphertext of the client's.
		{fmt.Errorf("%w: version 1 of key %q", state.ErrUnseal, "k"), 500, "failed to generate encryption key"},
	}
	for _, tt := range tests {
		status, msg := statusOf(generate, tt.err)
		if status != tt.status || msg != tt.msg {
			t.Errorf("statusOf(%v) = %d %q, want %d %q", tt.err, status, msg, tt.status, tt.msg)
		}
	}
	if status, msg := statusOf(nil, errors.New("x")); status != 500 || msg != "internal server error" {
		t.Errorf("statusOf without a route = %d %q", status, msg)
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	writeError(rec, http.StatusNotFound, "key does not exist")
	// KES's shape: the message encoded by json.Encoder in a hand-built object.
	const want = "{\"message\":\"key does not exist\"\n}"
	if rec.Code != 404 || rec.Body.String() != want {
		t.Errorf("writeError: %d %q, want 404 %q", rec.Code, rec.Body.String(), want)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cl := rec.Header().Get("Content-Length"); cl != fmt.Sprint(len(want)) {
		t.Errorf("Content-Length %q, want %d", cl, len(want))
	}
}

func findRoute(t *testing.T, path string) *route {
	t.Helper()
	for i := range routes {
		if routes[i].path == path {
			return &routes[i]
		}
	}
	t.Fatalf("no route %s", path)
	return nil
}
