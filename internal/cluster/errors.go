package cluster

import (
	"errors"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/state"
)

// Errors of the cluster layer.
var (
	ErrNoLeader         = errors.New("cluster has no leader: writes are unavailable until a majority of nodes is up")
	ErrNotPartOfCluster = errors.New("server not part of cluster")
	ErrWrongHSM         = errors.New("failed to unseal root encryption key with HSM")
	ErrNodeExists       = errors.New("node is already part of the cluster")
	ErrNodeNotFound     = errors.New("node is not part of the cluster")
	ErrNodeUnavailable  = errors.New("node is not available")
	ErrStale            = errors.New("node has lost contact with the cluster for longer than the staleness bound")
	ErrNotFresh         = errors.New("node is not fresh")
	ErrLeadershipLost   = errors.New("the leader lost its leadership during the write: it may or may not have been applied")
	ErrShuttingDown     = errors.New("node is shutting down")
	ErrRemoved          = errors.New("this node was removed from its cluster: stop it, delete its kms.db and start it as a fresh node, or add it again")
	// ErrTampered stops a node whose snapshot or log holds a record that is
	// not authentic: it serves nothing rather than a state an attacker
	// chose.
	ErrTampered = errors.New("refusing tampered state")
)

// wireErrors are the errors that keep their identity when a peer returns
// them over RPC: a write forwarded to the leader fails on the follower with
// the same error as on the leader.
var wireErrors = []error{
	state.ErrEnclaveExists, state.ErrEnclaveNotFound,
	state.ErrKeyExists, state.ErrKeyNotFound,
	state.ErrPolicyNotFound,
	state.ErrIdentityNotFound, state.ErrIdentityExists,
	state.ErrInvalidArgument, state.ErrNotInitialized,
	crypto.ErrDecrypt,
	ErrNoLeader, ErrLeadershipLost, ErrShuttingDown, ErrRemoved, ErrNodeExists, ErrNodeNotFound, ErrNodeUnavailable, ErrNotFresh,
	// A version conflict is an ErrKeyExists that the proposer retries;
	// sent as ErrKeyExists, a follower answered a create with 409 for a
	// key that did not exist whenever its copy of the key was behind.
	state.ErrVersionConflict,
}

// rpcError is an error as it travels between nodes: its text and, if it is
// one of wireErrors, which one.
type rpcError struct {
	Message string `json:"message"`
	Kind    int    `json:"kind"` // 1 + index in wireErrors; 0 for other errors
}

func encodeError(err error) *rpcError {
	if err == nil {
		return nil
	}
	e := &rpcError{Message: err.Error()}
	// From the end: an error added later may be a case of an earlier one
	// (ErrVersionConflict of ErrKeyExists), and is the more precise.
	for i := len(wireErrors) - 1; i >= 0; i-- {
		if errors.Is(err, wireErrors[i]) {
			e.Kind = i + 1
			break
		}
	}
	return e
}

// remoteError is an error returned by a peer.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func decodeError(e *rpcError) error {
	if e == nil {
		return nil
	}
	r := &remoteError{msg: e.Message}
	if e.Kind > 0 && e.Kind <= len(wireErrors) {
		r.kind = wireErrors[e.Kind-1]
	}
	return r
}
