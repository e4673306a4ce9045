package minkms

import (
	"context"
	"errors"
	"net/http"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/kesformat"
	"github.com/keep-kms/keep/internal/profile"
	"github.com/keep-kms/keep/internal/ratelimit"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// Errors of the HTTP layer itself.
var (
	errNotFound         = errors.New("not found")
	errMethodNotAllowed = errors.New("method not allowed")
	errTooLarge         = errors.New("request body too large")
	errBatchTooLarge    = errors.New("batch too large")
	errNotReady         = errors.New("node is not ready")
	errInternal         = errors.New("internal server error")
)

// exact are the errors whose text the client compares byte for byte
// (spec §4.2): they are sent as the sentinel's text, without context.
var exact = []struct {
	err    error
	status int
}{
	{service.ErrPermission, http.StatusForbidden},
	{ratelimit.ErrTooManyRequests, http.StatusTooManyRequests},
	{state.ErrEnclaveExists, http.StatusConflict},
	{state.ErrEnclaveNotFound, http.StatusNotFound},
	{state.ErrKeyExists, http.StatusConflict},
	{state.ErrKeyNotFound, http.StatusNotFound},
	{state.ErrPolicyNotFound, http.StatusNotFound},
	{state.ErrIdentityNotFound, http.StatusNotFound},
	{crypto.ErrDecrypt, http.StatusBadRequest},
	{errNotFound, http.StatusNotFound},
	{errMethodNotAllowed, http.StatusMethodNotAllowed},
	{errTooLarge, http.StatusRequestEntityTooLarge},
	{errNotReady, http.StatusServiceUnavailable},
	{audit.ErrUnavailable, http.StatusServiceUnavailable},
	{profile.ErrRunning, http.StatusConflict},
	{profile.ErrNotRunning, http.StatusNotFound},
}

// explained are errors sent with their whole text, which says what was
// wrong with the request.
var explained = []struct {
	err    error
	status int
}{
	{state.ErrIdentityExists, http.StatusConflict},
	{kesformat.ErrNoHMACKey, http.StatusConflict},
	{state.ErrKeyDisabled, http.StatusConflict},
	{state.ErrKeyPendingDeletion, http.StatusConflict},
	{state.ErrKeyInUse, http.StatusConflict},
	{state.ErrHSMExists, http.StatusConflict},
	{state.ErrHSMInUse, http.StatusConflict},
	{state.ErrHSMNotFound, http.StatusNotFound},
	{service.ErrHSMNotConfigured, http.StatusNotFound},
	{state.ErrInvalidArgument, http.StatusBadRequest},
	{errMalformed, http.StatusBadRequest},
	{errBatchTooLarge, http.StatusRequestEntityTooLarge},
	{cluster.ErrNoLeader, http.StatusServiceUnavailable},
	{cluster.ErrStale, http.StatusServiceUnavailable},
	{cluster.ErrLeadershipLost, http.StatusServiceUnavailable},
	{cluster.ErrDiskFull, http.StatusServiceUnavailable},
	{cluster.ErrDiskFailed, http.StatusServiceUnavailable},
	{cluster.ErrRemoved, http.StatusServiceUnavailable},
	{cluster.ErrShuttingDown, http.StatusServiceUnavailable},
	{cluster.ErrNodeExists, http.StatusConflict},
	{cluster.ErrNotFresh, http.StatusConflict},
	{cluster.ErrNodeNotFound, http.StatusNotFound},
	{cluster.ErrNodeUnavailable, http.StatusBadGateway},
	{cluster.ErrRestartUnsupported, http.StatusNotImplemented},
	{state.ErrNotInitialized, http.StatusServiceUnavailable},
}

// statusOf maps an error to the status and message a client gets. It is the
// only place that does; anything unknown is a 500 whose details stay in the
// server log.
func statusOf(err error) (int, string) {
	for _, e := range exact {
		if errors.Is(err, e.err) {
			return e.status, e.err.Error()
		}
	}
	for _, e := range explained {
		if errors.Is(err, e.err) {
			return e.status, err.Error()
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable, "request timed out"
	}
	return http.StatusInternalServerError, errInternal.Error()
}
