package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/state"
)

// The /v1/rpc endpoints nodes call on each other. Only callers presenting
// the node identity reach them; clients, even SysAdmins, get 403. Nodes of
// other versions call them during a rolling upgrade: never rename one
// (TestWireNamesStable pins them).
const (
	rpcMembership = "/v1/rpc/membership" // a membership change for the leader
	rpcStatus     = "/v1/rpc/status"     // a node's status, for CLUSTER:STATUS
	rpcJoin       = "/v1/rpc/join"       // asks a fresh node to join this cluster
	rpcReset      = "/v1/rpc/reset"      // asks a removed node to start over as a fresh cluster
	rpcApplied    = "/v1/rpc/applied"    // a follower's stream of how far it has applied the log
	rpcRestart    = "/v1/rpc/restart"    // asks a node to restart its process
)

// errNotSent marks an RPC that failed before its request was written.
var errNotSent = errors.New("request not sent")

// rpcTimeout bounds an RPC whose caller set no deadline.
const rpcTimeout = 30 * time.Second

// maxRPCBody bounds RPC requests and the replies to forwarded writes.
const maxRPCBody = 64 << 20

// maxForwardEntry bounds a forwarded entry: a restore carries a whole
// backup (state.MaxBackup), base64 in the entry's JSON. Only nodes of the
// cluster can send one.
const maxForwardEntry = state.MaxBackup/3*4 + 1<<20

// membershipRequest is a membership change a follower hands to the leader.
type membershipRequest struct {
	AddNode       string `json:"add_node,omitempty"`
	RemoveNode    string `json:"remove_node,omitempty"`
	DeleteCluster bool   `json:"delete_cluster,omitempty"`
}

type forwardResponse struct {
	Index uint64    `json:"index"`
	Err   *rpcError `json:"error,omitempty"`
}

type joinRequest struct {
	ClusterID string `json:"cluster_id"`
	ID        string `json:"id"`
	Leader    string `json:"leader"`
	// SealedRootKey is the cluster's root key, sealed by each of its HSMs
	// (state.State.SealedRootKey): the node must unseal it to join.
	SealedRootKey []byte `json:"sealed_root_key"`
	// Proof is joinProof of the request: it shows that the caller holds
	// the cluster's root key, to a node that does not know the caller's
	// node key (it has another of the cluster's HSMs).
	Proof []byte `json:"proof"`
}

// callerKey is the context key of the identity of the node that called an
// RPC.
type callerKey struct{}

// callerOf returns the identity of the node that called the RPC of ctx.
func callerOf(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// infoJoinProof is the HKDF info of the MAC key of a join request.
const infoJoinProof = "keep/mac/join/v1"

// joinProof is the MAC, under the root key, of a join request: the
// cluster's seals, for whom (the node ID it gets) and from whom (the
// identity of the node that sends it, which TLS proves).
func joinProof(root []byte, req *joinRequest, caller string) ([]byte, error) {
	return hsm.RootMAC(root, infoJoinProof, req.SealedRootKey, []byte(req.ID), []byte(caller))
}

type errorResponse struct {
	Err *rpcError `json:"error,omitempty"`
}

// call sends an RPC with a JSON request to the node at host and decodes
// its JSON reply into resp.
func (t *Transport) call(ctx context.Context, host, path string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return t.callRaw(ctx, host, path, body, resp)
}

// callRaw sends an RPC with the given body. Transport failures are
// ErrNodeUnavailable; errors the peer returns keep their identity.
func (t *Transport) callRaw(ctx context.Context, host, path string, body []byte, resp any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+host+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: invalid address %q: %v", ErrNodeUnavailable, host, err)
	}
	// Whether the request was written tells a failure the peer never saw
	// from one it may have acted on.
	var wrote atomic.Bool
	r = r.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	}))
	res, err := t.client.Do(r)
	if errors.Is(err, errNotNode) {
		return fmt.Errorf("%w: %s: %w", ErrNodeUnavailable, host, errNotNode)
	}
	if err != nil && !wrote.Load() {
		return fmt.Errorf("%w: %s is not reachable: %w: %w", ErrNodeUnavailable, host, errNotSent, unwrapURL(err))
	}
	if err != nil {
		return fmt.Errorf("%w: %s is not reachable: %w", ErrNodeUnavailable, host, unwrapURL(err))
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxRPCBody))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNodeUnavailable, host, err)
	}
	if res.StatusCode != http.StatusOK {
		var e errorResponse
		if json.Unmarshal(data, &e) == nil && e.Err != nil {
			return decodeError(e.Err)
		}
		return fmt.Errorf("%w: %w", ErrNodeUnavailable, &statusError{host: host, status: res.Status, code: res.StatusCode})
	}
	if resp == nil {
		return nil
	}
	return json.Unmarshal(data, resp)
}

// RPCHandler serves the /v1/rpc endpoints to other nodes.
func (n *Node) RPCHandler() http.Handler {
	mux := http.NewServeMux()
	handle := func(path string, f func(ctx context.Context, body []byte) (any, error)) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			// A fresh node also lets a node of an HSM it does not have
			// ask it to join (only that, over the peer handshake, and
			// serveJoin checks the proof).
			node := n.cfg.Transport.IsNode(r)
			joiner := !node && path == rpcJoin && r.TLS != nil && r.TLS.ServerName == RPCServerName && n.members.joinable()
			if !node && !joiner {
				writeRPC(w, http.StatusForbidden, errorResponse{Err: &rpcError{Message: "access denied: only cluster nodes may call " + path}})
				return
			}
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRPCBody))
			if err != nil {
				writeRPC(w, http.StatusBadRequest, errorResponse{Err: encodeError(err)})
				return
			}
			resp, err := f(context.WithValue(r.Context(), callerKey{}, identity.Peer(r.TLS).String()), body)
			if err != nil && joiner {
				// Whoever it is learns nothing of this node.
				writeRPC(w, http.StatusForbidden, errorResponse{Err: &rpcError{Message: "access denied: only cluster nodes may call " + path + ", or a holder of the root key of a cluster that one of this node's HSMs seals"}})
				return
			}
			if err != nil {
				writeRPC(w, http.StatusConflict, errorResponse{Err: encodeError(err)})
				return
			}
			writeRPC(w, http.StatusOK, resp)
		})
	}
	handle(rpcMembership, n.members.serveMembership)
	handle(rpcStatus, func(context.Context, []byte) (any, error) { return n.LocalStatus(), nil })
	handle(rpcJoin, n.members.serveJoin)
	handle(rpcReset, func(ctx context.Context, _ []byte) (any, error) { return struct{}{}, n.reset(ctx) })
	mux.HandleFunc(rpcApplied, n.reads.serveApplied)
	handle(rpcRestart, func(context.Context, []byte) (any, error) {
		if n.cfg.Restart == nil {
			return nil, errors.New("restart is not supported by this node")
		}
		go n.cfg.Restart()
		return struct{}{}, nil
	})
	return mux
}

func writeRPC(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// unwrapURL drops the "Post https://…" of a url.Error, which says nothing
// the caller does not know.
func unwrapURL(err error) error {
	var u *url.Error
	if errors.As(err, &u) {
		return u.Err
	}
	return err
}

// statusError is a peer's answer with an unexpected HTTP status.
type statusError struct {
	host   string
	status string
	code   int
}

func (e *statusError) Error() string { return e.host + " answered " + e.status }

// notReady reports whether err is a peer's answer that it is not ready yet.
func notReady(err error) bool {
	var s *statusError
	return errors.As(err, &s) && s.code == http.StatusServiceUnavailable
}
