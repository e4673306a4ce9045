package kes

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/kesformat"
	"github.com/keep-kms/keep/internal/ratelimit"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// requestError is a request refused by the API itself, before it reached
// the service: a wrong method, no client certificate, a malformed name or
// body. Its message is sent as it is; such requests are not audited.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) *requestError {
	return &requestError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// Request errors with fixed texts (spec §1.2, §3).
var (
	errInsecure    = badRequest("insecure connection: TLS is required")
	errNoCert      = badRequest("tls: client certificate is required")
	errBody        = badRequest("invalid request body")
	errImportBody  = badRequest("invalid import key request body")
	errTooMany     = badRequest("too many ciphertexts")
	errUnavailable = errors.New("key store is unavailable") // /v1/ready: this node's state is not initialized
	errUnreachable = errors.New("key store is not reachable")
)

func errMethod(got, want string) *requestError {
	return &requestError{http.StatusMethodNotAllowed, fmt.Sprintf("received method '%s' expected '%s'", got, want)}
}

func errKeyName(name string) *requestError {
	return badRequest("key name '%s' is empty, too long or contains invalid characters", name)
}

func errPolicyName(name string) *requestError {
	return badRequest("policy name '%s' is empty, too long or contains invalid characters", name)
}

func errIdentity(id string) *requestError {
	return badRequest("identity '%s' is empty, too long or contains invalid characters", id)
}

func errPattern(pattern string) *requestError {
	return badRequest("listing pattern '%s' is empty, too long or is invalid", pattern)
}

func errAlgorithm(cipher string) *requestError {
	return &requestError{http.StatusNotAcceptable, fmt.Sprintf("algorithm '%s' is not supported", cipher)}
}

func errKeySize(cipher string) *requestError {
	return &requestError{http.StatusNotAcceptable, fmt.Sprintf("invalid key size for '%s'", cipher)}
}

// errorTable maps the errors of the service and the layers below it to the
// status and message a KES client gets. It is the only place that does. A
// message is what KES sends, which clients (MinIO) compare byte for byte;
// an empty message sends the error's own text, which explains what was
// wrong.
var errorTable = []struct {
	err    error
	status int
	msg    string
}{
	{service.ErrPermission, http.StatusForbidden, "not authorized: insufficient permissions"},
	{ratelimit.ErrTooManyRequests, http.StatusTooManyRequests, "too many requests"},
	{state.ErrKeyExists, http.StatusBadRequest, "key already exists"},
	{state.ErrKeyNotFound, http.StatusNotFound, "key does not exist"},
	{state.ErrPolicyNotFound, http.StatusNotFound, "policy does not exist"},
	{state.ErrIdentityNotFound, http.StatusNotFound, "identity does not exist"},
	{state.ErrEnclaveNotFound, http.StatusNotFound, "enclave does not exist"},
	{crypto.ErrDecrypt, http.StatusBadRequest, "decryption failed: ciphertext is not authentic"},
	{kesformat.ErrNoHMACKey, http.StatusConflict, "key does not support HMAC"},
	{state.ErrKeyDisabled, http.StatusConflict, ""},
	{state.ErrKeyPendingDeletion, http.StatusConflict, ""},
	{state.ErrKeyInUse, http.StatusConflict, ""},
	{errUnavailable, http.StatusBadGateway, "key store is unavailable"},
	{errUnreachable, http.StatusGatewayTimeout, "key store is not reachable"},
	{audit.ErrUnavailable, http.StatusServiceUnavailable, "audit log is unavailable"},
	{state.ErrNotInitialized, http.StatusServiceUnavailable, "key store is unavailable"},
	{state.ErrInvalidArgument, http.StatusBadRequest, ""},
	{state.ErrIdentityExists, http.StatusBadRequest, ""},
	{cluster.ErrNoLeader, http.StatusServiceUnavailable, ""},
	{cluster.ErrStale, http.StatusServiceUnavailable, ""},
	{cluster.ErrLeadershipLost, http.StatusServiceUnavailable, ""},
	{cluster.ErrDiskFull, http.StatusServiceUnavailable, ""},
	{cluster.ErrDiskFailed, http.StatusServiceUnavailable, ""},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "request timed out"},
}

// statusOf maps an error to the status and message a client gets. Anything
// unknown is a 500 with the route's failure message; its details stay in
// the server log.
func statusOf(rt *route, err error) (int, string) {
	var re *requestError
	if errors.As(err, &re) {
		return re.status, re.msg
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			if e.msg == "" {
				return e.status, err.Error()
			}
			return e.status, e.msg
		}
	}
	if rt != nil && rt.failure != "" {
		return http.StatusInternalServerError, rt.failure
	}
	return http.StatusInternalServerError, "internal server error"
}
