package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keep-kms/keep/internal/state"
)

// instance is one run of raft; the node replaces it when it joins a
// cluster, is edited, or is reset. Node.mu guards the replacement: every
// use of the node's instance gets it with current, and an instance a
// caller got may be stopped meanwhile (raft then answers as shut down).
type instance struct {
	stopped bool
	raft    *raft.Raft
	id      raft.ServerID
	stores  *stores
	net     *raft.NetworkTransport
}

// current returns the running raft instance.
func (n *Node) current() *instance {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.inst
}

// start runs raft on st as node id.
func (n *Node) start(st *stores, id raft.ServerID) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.startLocked(st, id)
}

// startLocked is start for a caller that holds n.mu.
func (n *Node) startLocked(st *stores, id raft.ServerID) error {
	n.fsm.applied.Store(0)
	n.fsm.useStores(st)
	if err := n.fsm.restoreNewest(st); err != nil {
		return err
	}
	conf := n.raftConfig(id)
	conf.NoSnapshotRestoreOnStart = true // restoreNewest did
	net := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  n.cfg.Transport.listen(),
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  raftLogger(),
	})
	if st.faults != nil {
		st.faults.setNode(n.cfg.Host, n.cfg.Logger)
	}
	r, err := raft.NewRaft(conf, n.fsm, st.logs, st.stable, st.snaps, net)
	if err != nil {
		net.Close()
		return fmt.Errorf("failed to start raft: %w", err)
	}
	n.inst = &instance{raft: r, id: id, stores: st, net: net}
	n.members.removed.Store(false)
	return nil
}

// stop shuts raft down and closes its stores; the caller holds n.mu.
func (inst *instance) stop() error {
	inst.stopped = true
	err := inst.raft.Shutdown().Error()
	return errors.Join(err, inst.net.Close(), inst.stores.close())
}

// diskFault returns the error writes get while this node cannot write
// its raft log (a full or failing disk), nil otherwise.
func (inst *instance) diskFault() error {
	if f := inst.stores.faults; f != nil {
		return f.Fault()
	}
	return nil
}

// faultSince returns when this node's raft log last became unwritable,
// and whether it is now.
func (inst *instance) faultSince() (time.Time, bool) {
	var f *StorageError
	if errors.As(inst.diskFault(), &f) {
		return f.since, true
	}
	return time.Time{}, false
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
