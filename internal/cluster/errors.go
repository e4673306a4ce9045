package cluster

import (
	"errors"
	"fmt"

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
	// ErrDiskFull and ErrDiskFailed refuse a write on a node that cannot
	// write its raft log: its disk is full, or the file system failed a
	// write or fsync. The node serves reads meanwhile and takes writes
	// again by itself (see faultLog); the error (a *StorageError) names it.
	ErrDiskFull   = errors.New("disk full: the node cannot write its raft log")
	ErrDiskFailed = errors.New("disk error: the node cannot write its raft log")
)

// wireError is an error that keeps its identity when a peer returns it over
// the node transport: a write forwarded to the leader fails on the
// follower with the same error as on the leader.
//
// Nodes of different versions talk to each other during a rolling upgrade,
// so each error is named by codes that never change: kind, the number every
// version of Keep has sent (it was once the error's position in a list, and
// the numbers of that list are kept), and code, a name sent beside it since
// the numbers were made explicit. Never change or reuse a kind or a code;
// a new error takes the next kind and a new code, at the end.
type wireError struct {
	kind int
	code string
	err  error
}

// wireErrors is the registry of the errors nodes exchange. A reply carries
// the first entry its error matches (errors.Is), so an error that wraps
// several, such as ErrNoLeader and ErrNodeUnavailable for a leader that
// cannot be reached, travels as the one listed first, and an error that
// is a case of another (ErrVersionConflict of ErrKeyExists) is listed
// before it. The order is that of matching; the kinds say what is sent.
var wireErrors = []wireError{
	{1, "enclave_exists", state.ErrEnclaveExists},
	{2, "enclave_not_found", state.ErrEnclaveNotFound},
	// A version conflict is an ErrKeyExists that the proposer retries;
	// sent as ErrKeyExists (as nodes before kind 21 do), a follower
	// answered a create with 409 for a key that did not exist whenever
	// its copy of the key was behind.
	{21, "version_conflict", state.ErrVersionConflict},
	{3, "key_exists", state.ErrKeyExists},
	{4, "key_not_found", state.ErrKeyNotFound},
	{5, "policy_not_found", state.ErrPolicyNotFound},
	{6, "identity_not_found", state.ErrIdentityNotFound},
	{7, "identity_exists", state.ErrIdentityExists},
	{8, "invalid_argument", state.ErrInvalidArgument},
	{9, "not_initialized", state.ErrNotInitialized},
	{10, "decrypt", crypto.ErrDecrypt},
	{11, "no_leader", ErrNoLeader},
	{12, "leadership_lost", ErrLeadershipLost},
	{13, "shutting_down", ErrShuttingDown},
	{14, "removed", ErrRemoved},
	{15, "node_exists", ErrNodeExists},
	{16, "node_not_found", ErrNodeNotFound},
	{17, "node_unavailable", ErrNodeUnavailable},
	{18, "not_fresh", ErrNotFresh},
	{19, "disk_full", ErrDiskFull},
	{20, "disk_failed", ErrDiskFailed},
}

// wireErrorsByKind and wireErrorsByCode look up what a peer sent.
var wireErrorsByKind, wireErrorsByCode = indexWireErrors(wireErrors)

func indexWireErrors(list []wireError) (map[int]error, map[string]error) {
	byKind, byCode := make(map[int]error, len(list)), make(map[string]error, len(list))
	for _, w := range list {
		if _, dup := byKind[w.kind]; dup || w.kind <= 0 {
			panic(fmt.Sprintf("cluster: wire error kind %d is invalid or used twice", w.kind))
		}
		if _, dup := byCode[w.code]; dup || w.code == "" {
			panic(fmt.Sprintf("cluster: wire error code %q is invalid or used twice", w.code))
		}
		byKind[w.kind], byCode[w.code] = w.err, w.err
	}
	return byKind, byCode
}

// rpcError is an error as it travels between nodes: its text and, if it is
// one of wireErrors, which one. Nodes before the codes send only Kind, and
// read only Kind.
type rpcError struct {
	Message string `json:"message"`
	Kind    int    `json:"kind"`           // wireError.kind; 0 for other errors
	Code    string `json:"code,omitempty"` // wireError.code
}

func encodeError(err error) *rpcError {
	if err == nil {
		return nil
	}
	e := &rpcError{Message: err.Error()}
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			e.Kind, e.Code = w.kind, w.code
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

// decodeError returns the error a peer sent. Its code names it; a peer
// that sends none (an older version), or a code this node does not know (a
// newer version's), is understood by its kind. An error known by neither
// keeps only its text.
func decodeError(e *rpcError) error {
	if e == nil {
		return nil
	}
	r := &remoteError{msg: e.Message}
	if known, ok := wireErrorsByCode[e.Code]; ok {
		r.kind = known
	} else {
		r.kind = wireErrorsByKind[e.Kind]
	}
	return r
}
