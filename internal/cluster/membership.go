package cluster

import (
	"cmp"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

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

// AddNode adds the node at host to the cluster. The node must be running,
// reachable, hold the cluster's HSM key, and be fresh: a one-node cluster
// without keys, policies or identities.
func (n *Node) AddNode(ctx context.Context, host string) error {
	host = NormalizeHost(host)
	inst := n.current()
	if inst.raft.State() != raft.Leader {
		return n.forwardToLeader(ctx, inst, &membershipRequest{AddNode: host})
	}
	return n.addNode(ctx, inst, host)
}

// RemoveNode removes the node at host from the cluster. With
// deleteCluster the removed node also wipes its cluster state and starts
// over as a fresh one-node cluster.
func (n *Node) RemoveNode(ctx context.Context, host string, deleteCluster bool) error {
	host = NormalizeHost(host)
	inst := n.current()
	if inst.raft.State() != raft.Leader {
		return n.forwardToLeader(ctx, inst, &membershipRequest{RemoveNode: host, DeleteCluster: deleteCluster})
	}
	return n.removeNode(ctx, inst, host, deleteCluster)
}

func (n *Node) forwardToLeader(ctx context.Context, inst *instance, req *membershipRequest) error {
	leader, _ := inst.raft.LeaderWithID()
	if leader == "" {
		return ErrNoLeader
	}
	var resp forwardResponse
	if err := n.call(ctx, string(leader), rpcMembership, req, &resp); err != nil {
		return err
	}
	return decodeError(resp.Err)
}

// addNode adds the node at host as the leader. Membership changes are
// serialized (memberMu), and the new node's ID is one no node of the
// cluster ever had (newNodeID), so concurrent adds, on this leader or
// across a change of leader, never give two nodes one ID: raft would take
// the second add for a change of the first node's address, and drop it.
func (n *Node) addNode(ctx context.Context, inst *instance, host string) error {
	n.memberMu.Lock()
	defer n.memberMu.Unlock()
	id, err := newNodeID(inst, host)
	if err != nil {
		return err
	}
	join := &joinRequest{ClusterID: n.cfg.State.ClusterID(), ID: id, Leader: n.cfg.Host, SealedRootKey: n.cfg.State.SealedRootKey()}
	proof, err := n.cfg.Keyring.MAC(infoJoinProof, join.SealedRootKey, []byte(join.ID), []byte(n.cfg.Transport.Identity().String()))
	if err != nil {
		return err
	}
	join.Proof = proof
	if err := n.call(ctx, host, rpcJoin, join, nil); err != nil {
		return fmt.Errorf("cannot add %s: %w", host, err)
	}
	if err := inst.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(host), 0, membershipTimeout).Error(); err != nil {
		return fmt.Errorf("cannot add %s: %w", host, cmp.Or(raftError(err), err))
	}
	n.cfg.Logger.Info("node added to the cluster", "node", id, "host", host)
	return n.waitCaughtUp(ctx, host, inst.raft.AppliedIndex())
}

// waitCaughtUp waits until the node at host has applied the log up to
// index. Until a new node has caught up, the cluster's majority may hang on
// it (two nodes need both): the next membership change waits for it.
func (n *Node) waitCaughtUp(ctx context.Context, host string, index uint64) error {
	ctx, cancel := context.WithTimeout(ctx, membershipTimeout)
	defer cancel()
	for {
		var st NodeStatus
		if err := n.call(ctx, host, rpcStatus, struct{}{}, &st); err == nil && st.Commit >= index {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s was added but has not caught up with the cluster within %v", host, membershipTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (n *Node) removeNode(ctx context.Context, inst *instance, host string, deleteCluster bool) error {
	n.memberMu.Lock()
	defer n.memberMu.Unlock()
	id, err := idOf(inst, host)
	if err != nil {
		return err
	}
	if err := inst.raft.RemoveServer(id, 0, membershipTimeout).Error(); err != nil {
		return fmt.Errorf("cannot remove %s: %w", host, cmp.Or(raftError(err), err))
	}
	n.cfg.Logger.Info("node removed from the cluster", "node", id, "host", host)
	if !deleteCluster {
		return nil
	}
	if host == n.cfg.Host {
		// This node leaves its own cluster: it resets once it has answered.
		go n.reset(context.Background()) // #nosec G118 -- the reset must outlive the request that asked for it: this node answers first, then resets
		return nil
	}
	if err := n.call(ctx, host, rpcReset, struct{}{}, nil); err != nil {
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
func (n *Node) joinable() bool {
	if !n.cfg.State.Fresh() {
		return false
	}
	inst := n.current()
	if inst == nil {
		return false // raft has not started yet
	}
	f := inst.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) <= 1
}

// serveJoin makes this node a member of the cluster that asks: it drops its
// own one-node cluster and waits, empty, for the leader's log.
func (n *Node) serveJoin(ctx context.Context, body []byte) (any, error) {
	var req joinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	if req.ClusterID != "" && req.ClusterID == n.cfg.State.ClusterID() {
		return nil, fmt.Errorf("%w: %s is already a node of this cluster", ErrNodeExists, n.cfg.Host)
	}
	inst := n.current()
	f := inst.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	if servers := f.Configuration().Servers; len(servers) > 1 {
		return nil, fmt.Errorf("%w: %s is a node of another cluster of %d nodes: remove it there first (keep rm --delete-cluster)", ErrNotFresh, n.cfg.Host, len(servers))
	}
	if !n.cfg.State.Fresh() {
		return nil, fmt.Errorf("%w: %s holds enclaves, keys, policies or identities of another cluster: stop it, delete its %s, and start it again", ErrNotFresh, n.cfg.Host, DBFile)
	}
	// The node must unseal the cluster's root key with the HSM whose node
	// key it presents, before it gives up its own cluster: the log it is
	// about to receive may begin with an init entry sealed only by HSMs
	// it does not have (see hsm.Keyring).
	root, h, err := n.cfg.Keyring.Try(ctx, req.SealedRootKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %s cannot join: %w", ErrWrongHSM, n.cfg.Host, err)
	}
	defer clear(root)
	if h != n.cfg.HSM {
		return nil, fmt.Errorf("%w: %s cannot join: it presents the node key of HSM %s, which does not seal the cluster's root key; add that HSM to the cluster first (keep add-hsm), or start the node with %s first in its configuration",
			ErrWrongHSM, n.cfg.Host, n.cfg.HSM.Name(), h.Name())
	}
	// The caller may be a node of an HSM this one does not have: only a
	// holder of the root key can prove the request.
	proof, err := joinProof(root, &req, callerOf(ctx))
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(proof, req.Proof) {
		return nil, fmt.Errorf("%w: %s cannot join: the request is not authentic: its sender does not hold the cluster's root key", ErrWrongHSM, n.cfg.Host)
	}
	n.cfg.Keyring.Adopt(req.SealedRootKey, root)
	n.cfg.Logger.Info("joining a cluster", "leader", req.Leader, "node", req.ID)
	return struct{}{}, n.restart(ctx, req.SealedRootKey, func(st *stores) (raft.ServerID, error) { return raft.ServerID(req.ID), nil })
}

// reset makes this node a fresh one-node cluster again, as after its first
// start: its raft state is deleted, and a new root key created.
func (n *Node) reset(ctx context.Context) error {
	n.cfg.Logger.Info("deleting cluster state and starting as a fresh one-node cluster")
	if err := n.restart(ctx, nil, func(st *stores) (raft.ServerID, error) { return n.bootstrap(ctx, st) }); err != nil {
		return err
	}
	return n.CatchUp(ctx)
}

// restart stops raft, deletes its state, empties the state machine, and
// starts raft again on fresh stores prepared by setup. The state is
// emptied because the new raft replays its log from the start. The new
// stores keep sealed as the root key (nil: the one the old stores held).
func (n *Node) restart(ctx context.Context, sealed []byte, setup func(*stores) (raft.ServerID, error)) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if sealed == nil {
		sealed, _ = n.inst.stores.stable.Get(sealedRootKeyName)
	}
	if err := n.inst.stop(); err != nil {
		n.cfg.Logger.Warn("stopping raft", "err", err)
	}
	if err := wipeStores(n.cfg.Dir); err != nil {
		return err
	}
	st, err := openStores(ctx, n.cfg.Dir, n.cfg.Keyring)
	if err != nil {
		return err
	}
	if len(sealed) > 0 {
		if err := st.stable.Set(sealedRootKeyName, sealed); err != nil {
			st.close()
			return err
		}
	}
	n.cfg.State.Reset()
	id, err := setup(st)
	if err == nil {
		err = n.startLocked(st, id)
	}
	if err != nil {
		st.close()
	}
	return err
}

// Edit drops nodes from this node's view of the cluster without asking the
// others: the repair for a cluster that lost nodes for good and with them
// its majority. Remove one failed node at a time.
func (n *Node) Edit(ctx context.Context, remove []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	inst := n.inst
	f := inst.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	c := f.Configuration()
	conf := c.Clone()
	for _, id := range remove {
		if raft.ServerID(id) == inst.id {
			return fmt.Errorf("%w: cannot remove node %s from its own view of the cluster", state.ErrInvalidArgument, id)
		}
		i := slices.IndexFunc(conf.Servers, func(s raft.Server) bool { return string(s.ID) == id })
		if i < 0 {
			return fmt.Errorf("%w: no node has the ID %s", ErrNodeNotFound, id)
		}
		conf.Servers = slices.Delete(conf.Servers, i, i+1)
	}
	if err := inst.stop(); err != nil {
		n.cfg.Logger.Warn("stopping raft", "err", err)
	}
	st := inst.stores // in memory, the stores survive raft
	if n.cfg.Dir != "" {
		var err error
		if st, err = openStores(ctx, n.cfg.Dir, n.cfg.Keyring); err != nil {
			return err
		}
	}
	err := raft.RecoverCluster(n.raftConfig(inst.id), newFSM(state.New(n.cfg.Keyring), st), st.logs, st.stable, st.snaps, offlineTransport(), conf)
	if err != nil {
		st.close()
		return fmt.Errorf("failed to edit cluster: %w", err)
	}
	n.cfg.State.Reset()
	n.cfg.Logger.Info("cluster edited", "removed", remove)
	return n.startLocked(st, inst.id)
}
