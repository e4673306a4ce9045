package cluster

import (
	"cmp"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// membershipTimeout bounds a membership change in raft.
const membershipTimeout = 30 * time.Second

// defaultPort is added to a host named without one.
const defaultPort = "7373"

// NormalizeHost adds the default port to a host named without one.
func NormalizeHost(host string) string {
	if _, _, err := net.SplitHostPort(host); err != nil {
		return net.JoinHostPort(host, defaultPort)
	}
	return host
}

// members is a node's part in the membership of its cluster: as the
// leader, it adds and removes nodes, one change at a time; as a fresh
// node, it joins the cluster that asks; and it notices when this node was
// removed from its cluster.
type members struct {
	host      string       // this node's address in the cluster (Config.Host)
	state     *state.State // the cluster's ID and root key; whether the node is fresh
	keyring   *hsm.Keyring
	hsm       hsm.HSM    // the HSM whose node key this node presents (Config.HSM)
	transport *Transport // the RPCs to the other nodes
	logger    *slog.Logger
	done      <-chan struct{} // closed when the node shuts down

	// current returns the node's running raft instance; nil before raft
	// starts.
	current func() *instance
	// restart replaces the node's raft instance with one on fresh stores
	// that setup prepares (Node.restart): a node that joins drops its own
	// cluster.
	restart func(ctx context.Context, sealed []byte, setup func(*stores) (raft.ServerID, error)) error
	// reset makes this node a fresh one-node cluster (Node.reset): a node
	// that removes itself with deleteCluster.
	reset func(context.Context) error

	// mu serializes the membership changes this node makes as leader:
	// each reads the configuration and changes it, and the next must see
	// the change (see addNode).
	mu sync.Mutex
	// removed is set when this node was a member of its cluster and is no
	// more (watch), and cleared when a raft instance starts.
	removed atomic.Bool
}

// Joinable reports whether this node is a fresh one-node cluster, which
// another cluster may add (AddNode there): nothing of its own yet.
func (n *Node) Joinable() bool { return n.members.joinable() }

// AddNode adds the node at host to the cluster. The node must be running,
// reachable, hold the cluster's HSM key, and be fresh: a one-node cluster
// without keys, policies or identities.
func (n *Node) AddNode(ctx context.Context, host string) error {
	return n.members.add(ctx, NormalizeHost(host))
}

// RemoveNode removes the node at host from the cluster. With
// deleteCluster the removed node also wipes its cluster state and starts
// over as a fresh one-node cluster.
func (n *Node) RemoveNode(ctx context.Context, host string, deleteCluster bool) error {
	return n.members.remove(ctx, NormalizeHost(host), deleteCluster)
}

// add adds the node at host: here if this node leads, else by the leader.
func (m *members) add(ctx context.Context, host string) error {
	inst := m.current()
	if inst.raft.State() != raft.Leader {
		return m.forwardToLeader(ctx, inst, &membershipRequest{AddNode: host})
	}
	return m.addNode(ctx, inst, host)
}

// remove removes the node at host: here if this node leads, else by the
// leader.
func (m *members) remove(ctx context.Context, host string, deleteCluster bool) error {
	inst := m.current()
	if inst.raft.State() != raft.Leader {
		return m.forwardToLeader(ctx, inst, &membershipRequest{RemoveNode: host, DeleteCluster: deleteCluster})
	}
	return m.removeNode(ctx, inst, host, deleteCluster)
}

func (m *members) forwardToLeader(ctx context.Context, inst *instance, req *membershipRequest) error {
	leader, _ := inst.raft.LeaderWithID()
	if leader == "" {
		return ErrNoLeader
	}
	var resp forwardResponse
	if err := m.transport.call(ctx, string(leader), rpcMembership, req, &resp); err != nil {
		return err
	}
	return decodeError(resp.Err)
}

// addNode adds the node at host as the leader. Membership changes are
// serialized (mu), and the new node's ID is one no node of the
// cluster ever had (newNodeID), so concurrent adds, on this leader or
// across a change of leader, never give two nodes one ID: raft would take
// the second add for a change of the first node's address, and drop it.
func (m *members) addNode(ctx context.Context, inst *instance, host string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, err := newNodeID(inst, host)
	if err != nil {
		return err
	}
	join := &joinRequest{ClusterID: m.state.ClusterID(), ID: id, Leader: m.host, SealedRootKey: m.state.SealedRootKey()}
	proof, err := m.keyring.MAC(infoJoinProof, join.SealedRootKey, []byte(join.ID), []byte(m.transport.Identity().String()))
	if err != nil {
		return err
	}
	join.Proof = proof
	if err := m.transport.call(ctx, host, rpcJoin, join, nil); err != nil {
		return fmt.Errorf("cannot add %s: %w", host, err)
	}
	if err := inst.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(host), 0, membershipTimeout).Error(); err != nil {
		return fmt.Errorf("cannot add %s: %w", host, cmp.Or(raftError(err), err))
	}
	m.logger.Info("node added to the cluster", "node", id, "host", host)
	return m.waitCaughtUp(ctx, host, inst.raft.AppliedIndex())
}

// waitCaughtUp waits until the node at host has applied the log up to
// index. Until a new node has caught up, the cluster's majority may hang on
// it (two nodes need both): the next membership change waits for it.
func (m *members) waitCaughtUp(ctx context.Context, host string, index uint64) error {
	ctx, cancel := context.WithTimeout(ctx, membershipTimeout)
	defer cancel()
	for {
		var st NodeStatus
		if err := m.transport.call(ctx, host, rpcStatus, struct{}{}, &st); err == nil && st.Commit >= index {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s was added but has not caught up with the cluster within %v", host, membershipTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (m *members) removeNode(ctx context.Context, inst *instance, host string, deleteCluster bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, err := idOf(inst, host)
	if err != nil {
		return err
	}
	if err := inst.raft.RemoveServer(id, 0, membershipTimeout).Error(); err != nil {
		return fmt.Errorf("cannot remove %s: %w", host, cmp.Or(raftError(err), err))
	}
	m.logger.Info("node removed from the cluster", "node", id, "host", host)
	if !deleteCluster {
		return nil
	}
	if host == m.host {
		// This node leaves its own cluster: it resets once it has answered.
		go m.reset(context.Background()) // #nosec G118 -- the reset must outlive the request that asked for it: this node answers first, then resets
		return nil
	}
	if err := m.transport.call(ctx, host, rpcReset, struct{}{}, nil); err != nil {
		return fmt.Errorf("%s was removed, but did not delete its cluster state: %w", host, err)
	}
	return nil
}

// newNodeID returns the ID of a node to add at host: the log index of a
// barrier this leader commits first. A committed index holds one entry for
// good, so no two adds ever get one ID, on this leader or another, even an
// add whose node never made it into the configuration (its leader fell).
// IDs of clusters made before were the next integer after the largest ID,
// and stay below such an index (the log holds an entry for each node
// added); the ID is above every current one in any case.
func newNodeID(inst *instance, host string) (string, error) {
	barrier := inst.raft.Barrier(membershipTimeout)
	if err := barrier.Error(); err != nil {
		return "", fmt.Errorf("cannot add %s: %w", host, cmp.Or(raftError(err), err))
	}
	indexed, ok := barrier.(raft.IndexFuture)
	if !ok {
		return "", fmt.Errorf("cannot add %s: raft does not tell the index of a barrier", host)
	}
	f := inst.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", err
	}
	next := indexed.Index()
	for _, s := range f.Configuration().Servers {
		if string(s.Address) == host {
			return "", fmt.Errorf("%w: %s is node %s", ErrNodeExists, host, s.ID)
		}
		if id, err := strconv.ParseUint(string(s.ID), 10, 63); err == nil && id >= next {
			next = id + 1
		}
	}
	return strconv.FormatUint(next, 10), nil
}

func idOf(inst *instance, host string) (raft.ServerID, error) {
	f := inst.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.Address) == host {
			return s.ID, nil
		}
	}
	return "", fmt.Errorf("%w: no node has the address %s", ErrNodeNotFound, host)
}

// joinable reports whether this node may be asked to join a cluster: a
// fresh one-node cluster.
func (m *members) joinable() bool {
	if !m.state.Fresh() {
		return false
	}
	inst := m.current()
	if inst == nil {
		return false // raft has not started yet
	}
	f := inst.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) <= 1
}

// serveJoin makes this node a member of the cluster that asks: it drops its
// own one-node cluster and waits, empty, for the leader's log.
func (m *members) serveJoin(ctx context.Context, body []byte) (any, error) {
	var req joinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	if req.ClusterID != "" && req.ClusterID == m.state.ClusterID() {
		return nil, fmt.Errorf("%w: %s is already a node of this cluster", ErrNodeExists, m.host)
	}
	inst := m.current()
	f := inst.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	if servers := f.Configuration().Servers; len(servers) > 1 {
		return nil, fmt.Errorf("%w: %s is a node of another cluster of %d nodes: remove it there first (keep rm --delete-cluster)", ErrNotFresh, m.host, len(servers))
	}
	if !m.state.Fresh() {
		return nil, fmt.Errorf("%w: %s holds enclaves, keys, policies or identities of another cluster: stop it, delete its %s, and start it again", ErrNotFresh, m.host, DBFile)
	}
	// The node must unseal the cluster's root key with the HSM whose node
	// key it presents, before it gives up its own cluster: the log it is
	// about to receive may begin with an init entry sealed only by HSMs
	// it does not have (see hsm.Keyring).
	root, h, err := m.keyring.Try(ctx, req.SealedRootKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %s cannot join: %w", ErrWrongHSM, m.host, err)
	}
	defer clear(root)
	if h != m.hsm {
		return nil, fmt.Errorf("%w: %s cannot join: it presents the node key of HSM %s, which does not seal the cluster's root key; add that HSM to the cluster first (keep add-hsm), or start the node with %s first in its configuration",
			ErrWrongHSM, m.host, m.hsm.Name(), h.Name())
	}
	// The caller may be a node of an HSM this one does not have: only a
	// holder of the root key can prove the request.
	proof, err := joinProof(root, &req, callerOf(ctx))
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(proof, req.Proof) {
		return nil, fmt.Errorf("%w: %s cannot join: the request is not authentic: its sender does not hold the cluster's root key", ErrWrongHSM, m.host)
	}
	m.keyring.Adopt(req.SealedRootKey, root)
	m.logger.Info("joining a cluster", "leader", req.Leader, "node", req.ID)
	return struct{}{}, m.restart(ctx, req.SealedRootKey, func(st *stores) (raft.ServerID, error) { return raft.ServerID(req.ID), nil })
}

// serveMembership carries out a forwarded membership change, if this node
// leads.
func (m *members) serveMembership(ctx context.Context, body []byte) (any, error) {
	var req membershipRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	inst := m.current()
	var err error
	switch {
	case inst.raft.State() != raft.Leader:
		err = ErrNoLeader
	case req.AddNode != "":
		err = m.addNode(ctx, inst, req.AddNode)
	case req.RemoveNode != "":
		err = m.removeNode(ctx, inst, req.RemoveNode, req.DeleteCluster)
	default:
		err = errors.New("empty membership request")
	}
	return forwardResponse{Err: encodeError(err)}, nil
}

// watch notices when this node is removed from its cluster.
// Raft shuts down a removed leader, but a removed follower goes on as a
// follower of nobody; reads must not be served from its frozen state. The
// flag is kept current here, off the read path, which only loads it.
func (m *members) watch() {
	tick := time.NewTicker(membershipCheck)
	defer tick.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-tick.C:
		}
		inst := m.current()
		f := inst.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		servers := f.Configuration().Servers
		// An empty configuration is a node waiting for the log of the
		// cluster it joins, not a removed one.
		member := len(servers) == 0 || slices.ContainsFunc(servers, func(s raft.Server) bool { return s.ID == inst.id })
		m.removed.Store(!member)
	}
}
