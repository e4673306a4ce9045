// Package cluster runs Keep's raft cluster (hashicorp/raft): the stores in
// kms.db, the TLS transport on the API port, bootstrapping a node as a
// one-node cluster, membership changes, and Apply, the only path by which
// state changes. Followers forward writes to the leader over /v1/rpc.
package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/raft"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// Timing of the cluster: a lost leader is noticed within a second on a LAN.
const (
	heartbeatTimeout = 500 * time.Millisecond
	electionTimeout  = 500 * time.Millisecond
	applyTimeout     = 10 * time.Second
	// membershipCheck is how often a node checks it is still a member.
	membershipCheck = 250 * time.Millisecond
	// leaderWait is how long a follower waits for a leader to forward a
	// write to: long enough for an election, short enough to fail fast
	// when a majority is down.
	leaderWait = 2 * time.Second
	// commitTimeout is how soon an idle leader tells followers about new
	// commits; nudgeFollowers does it sooner where it matters.
	commitTimeout = 20 * time.Millisecond
	// followerWait bounds how long the leader waits for healthy followers to
	// apply a write before it answers, so that reads right after the answer
	// see the write on every healthy node.
	followerWait = 500 * time.Millisecond
)

// Config configures a node.
type Config struct {
	Dir  string // data directory; "" keeps everything in memory (dev mode)
	Host string // advertised host:port, the node's address in the cluster
	// Keyring holds the node's HSMs and, once unsealed, the root key.
	Keyring *hsm.Keyring
	// HSM is the node's HSM among them: the one whose node key the node
	// presents to its peers, and whose seal of the root key it unsealed
	// at start (see OpenKeyring).
	HSM       hsm.HSM
	State     *state.State
	Transport *Transport
	Logger    *slog.Logger
	// MaxStaleness returns how long a node that lost contact with the
	// leader keeps serving reads from its last state; 0 means for ever. It
	// is asked on every read, so it must be cheap; nil means for ever.
	MaxStaleness func() time.Duration
	// Restart restarts the process; nil where that is not supported.
	Restart func()
	// Snapshots tune raft's snapshots; zero values keep raft's defaults.
	Snapshots Snapshots
}

// Snapshots are raft's snapshot settings: a node snapshots its state after
// Threshold new entries, checking every Interval, and keeps TrailingLogs
// entries after a snapshot for followers that lag a little. A follower
// that lags more catches up from the snapshot.
type Snapshots struct {
	Threshold    uint64
	Interval     time.Duration
	TrailingLogs uint64
}

// Node is a member of a raft cluster. It runs one raft instance at a time
// (instance.go), replaced under mu when the node joins a cluster, is
// edited or is reset, and proposes writes (Apply). Its other jobs are
// types of their own, each given only what it needs of the node: reads
// (readGate: the read-lease protocol, and the waits of reads, forwarded
// writes and acknowledgements), write forwarding (forwarder on a follower,
// serveForwards on the leader), and membership (members).
type Node struct {
	cfg     Config
	fsm     *fsm // shared by every raft instance of the node
	started time.Time
	done    chan struct{} // closed by Close; stops the background loops

	mu   sync.RWMutex // read-held while using inst, write-held while replacing it
	inst *instance

	// restoring is held while a restore is installed (restoreLocal), and
	// read-held while a write is handed to raft (applyLocal): a write
	// applied between the restore's snapshot and its installation would
	// be lost.
	restoring sync.RWMutex

	reads   *readGate  // when this node's state may serve a read
	fwd     *forwarder // a follower's writes, to the leader
	members *members   // adding and removing nodes, joining, noticing removal
}

// Open starts the raft node of cfg. A data directory without raft state is
// bootstrapped as a one-node cluster. The node's state is current only once
// CatchUp has returned; in between it serves its peers (RPCHandler).
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{
		cfg:     cfg,
		started: time.Now(),
		done:    make(chan struct{}),
	}
	notify := make(chan struct{}, 1)
	n.fsm = &fsm{state: cfg.State, notify: notify, logger: cfg.Logger, keyring: cfg.Keyring}
	n.reads = newReadGate(n.current, &n.fsm.applied, notify, cfg.Transport, cfg.MaxStaleness, n.started, n.done)
	cfg.State.OnSeals(n.fsm.sealsChanged)
	n.fwd = newForwarder(cfg.Transport, n.done)
	cfg.Transport.serveForwards(func(c net.Conn) { serveForwards(c, n.done, n.serveForward) })
	n.members = &members{
		host:      cfg.Host,
		state:     cfg.State,
		keyring:   cfg.Keyring,
		hsm:       cfg.HSM,
		transport: cfg.Transport,
		logger:    cfg.Logger,
		done:      n.done,
		current:   n.current,
		restart:   n.restart,
		reset:     n.reset,
	}
	cfg.Transport.AdmitJoins(n.members.joinable)
	st, err := openStores(ctx, cfg.Dir, cfg.Keyring)
	if err != nil {
		return nil, err
	}
	if err := st.checkSnapshots(); err != nil {
		st.close()
		return nil, err
	}
	existing, err := raft.HasExistingState(st.logs, st.stable, st.snaps)
	if err != nil {
		st.close()
		return nil, fmt.Errorf("failed to read raft state: %w", err)
	}
	var id raft.ServerID
	if existing {
		id, err = n.memberID(st)
	} else {
		id, err = n.bootstrap(ctx, st)
	}
	if err == nil {
		err = n.start(st, id)
	}
	if err != nil {
		st.close()
		return nil, err
	}
	n.reads.run()
	go n.members.watch()
	return n, nil
}

func (n *Node) raftConfig(id raft.ServerID) *raft.Config {
	conf := raft.DefaultConfig()
	conf.LocalID = id
	conf.HeartbeatTimeout = heartbeatTimeout
	conf.ElectionTimeout = electionTimeout
	conf.LeaderLeaseTimeout = heartbeatTimeout / 2
	conf.CommitTimeout = commitTimeout
	if s := n.cfg.Snapshots; s.Threshold > 0 {
		conf.SnapshotThreshold = s.Threshold
	}
	if s := n.cfg.Snapshots; s.Interval > 0 {
		conf.SnapshotInterval = s.Interval
	}
	if s := n.cfg.Snapshots; s.TrailingLogs > 0 {
		conf.TrailingLogs = s.TrailingLogs
	}
	conf.Logger = raftLogger()
	return conf
}

// bootstrap makes a fresh node a one-node cluster: node 0 at its host. The
// root key is created and stored sealed before the cluster exists, so that
// the init entry can carry it once this node leads.
func (n *Node) bootstrap(ctx context.Context, st *stores) (raft.ServerID, error) {
	root := make([]byte, 32)
	if _, err := rand.Read(root); err != nil {
		return "", fmt.Errorf("failed to generate root encryption key: %w", err)
	}
	defer clear(root)
	seals, err := n.cfg.Keyring.Seal(ctx, root)
	if err != nil {
		return "", err
	}
	sealed, err := hsm.EncodeSeals(seals, root)
	if err != nil {
		return "", err
	}
	n.cfg.Keyring.Adopt(sealed, root)
	if err := st.stable.Set(sealedRootKeyName, sealed); err != nil {
		return "", fmt.Errorf("failed to store root encryption key: %w", err)
	}
	const id = "0"
	err = raft.BootstrapCluster(n.raftConfig(id), st.logs, st.stable, st.snaps, offlineTransport(), raft.Configuration{
		Servers: []raft.Server{{Suffrage: raft.Voter, ID: id, Address: raft.ServerAddress(n.cfg.Host)}},
	})
	if err != nil {
		return "", fmt.Errorf("failed to bootstrap cluster: %w", err)
	}
	return id, nil
}

// memberID finds this node in the cluster configuration by its --host.
func (n *Node) memberID(st *stores) (raft.ServerID, error) {
	c, err := configuration(n.cfg, st)
	if err != nil {
		return "", err
	}
	var hosts []string
	for _, s := range c.Servers {
		if string(s.Address) == n.cfg.Host {
			return s.ID, nil
		}
		hosts = append(hosts, string(s.Address))
	}
	if len(hosts) == 0 {
		// A node that was reset to join a cluster but never received its
		// log: it waits to be contacted by the leader as before.
		return "", fmt.Errorf("%w: this node was being added to a cluster but never received its state; delete %s and add it again",
			ErrNotPartOfCluster, filepath.Join(n.cfg.Dir, DBFile))
	}
	return "", fmt.Errorf("%w: this node was started with --host %s, but the cluster knows its nodes as %s; if it was added under another address, start it with that --host; if it was removed from the cluster, delete %s and add it again",
		ErrNotPartOfCluster, n.cfg.Host, strings.Join(hosts, ", "), filepath.Join(n.cfg.Dir, DBFile))
}

// configuration reads the latest cluster configuration from stores.
func configuration(cfg Config, st *stores) (raft.Configuration, error) {
	conf := raft.DefaultConfig()
	conf.LocalID = "probe"
	conf.Logger = raftLogger()
	// The configuration is in the snapshot's metadata: restoring the
	// snapshot into a throwaway state, as raft does by default, doubled a
	// restart's time (the real start restores it again).
	conf.NoSnapshotRestoreOnStart = true
	c, err := raft.GetConfiguration(conf, newFSM(state.New(cfg.Keyring), st), st.logs, st.stable, st.snaps, offlineTransport())
	if err != nil {
		return raft.Configuration{}, fmt.Errorf("failed to read cluster configuration: %w", err)
	}
	return c, nil
}

// CatchUp waits until this node has applied the log of its cluster. A node
// that leads a cluster that has not been initialized yet (a fresh one)
// proposes the init entry.
func (n *Node) CatchUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		inst := n.current()
		if err := n.fsm.failure(); err != nil {
			return err
		}
		if inst.raft.State() == raft.Leader {
			if err := inst.raft.Barrier(applyTimeout).Error(); err != nil {
				return fmt.Errorf("failed to apply raft log: %w", err)
			}
			if err := n.fsm.failure(); err != nil {
				return err
			}
			if n.cfg.State.Initialized() {
				return n.finishUpgrade(inst)
			}
			sealed, err := inst.stores.stable.Get(sealedRootKeyName)
			if err != nil || len(sealed) == 0 {
				return errors.New("cluster is not initialized and this node holds no root key")
			}
			return n.Apply(ctx, &state.Entry{
				Op:   state.OpInit,
				Time: time.Now().UTC(),
				Init: &state.InitArgs{ClusterID: uuid.NewString(), SealedRootKey: sealed},
			})
		}
		if n.cfg.State.Initialized() && inst.raft.Leader() != "" && inst.raft.AppliedIndex() >= inst.raft.CommitIndex() {
			// The commit index is capped by this node's own log: wait
			// for the leader to count it, and for the writes it
			// acknowledged meanwhile (the lease's fence).
			if leader, _ := inst.raft.LeaderWithID(); leader != "" {
				n.reads.awaitReads(ctx, inst, string(leader), startLeaseWait, startApplyWait)
			}
			if err := n.fsm.failure(); err != nil {
				return err
			}
			return n.finishUpgrade(inst)
		}
		select {
		case <-ctx.Done():
			return errors.New("timed out waiting for the cluster: no leader elected within 30s (are a majority of nodes up?)")
		case <-tick.C:
		}
	}
}

// Apply replicates a write and returns its outcome. On the leader it waits
// until a majority has committed the entry, this node has applied it, and
// the healthy followers have applied it or a short bound has passed. A
// follower forwards the write to the leader and waits until it has applied
// the entry itself. During an election a follower waits a little for the
// new leader, but only while the write has certainly reached no leader, so
// that a write is never applied twice.
func (n *Node) Apply(ctx context.Context, e *state.Entry) error {
	// The MAC is computed here, on the node that proposes the entry, before
	// it leaves for the leader or raft; every node verifies it before
	// State.Apply.
	data, err := n.cfg.State.EncodeEntry(e)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(leaderWait)
	for {
		inst := n.current()
		if err := n.gone(inst); err != nil {
			return err
		}
		if err := inst.diskFault(); err != nil {
			// Refused here, not by raft: a leader that failed an append
			// would step down, and the cluster elect again, on every
			// write while its disk is full.
			return err
		}
		if inst.raft.State() == raft.Leader {
			_, err := n.applyLocal(ctx, inst, data)
			return err
		}
		err := ErrNoLeader
		if leader, _ := inst.raft.LeaderWithID(); leader != "" {
			var index uint64
			index, err = n.fwd.forward(ctx, string(leader), data)
			if index > 0 {
				n.reads.waitApplied(ctx, index, applyWait)
			}
			if !neverArrived(err) {
				return err
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serveForward applies a forwarded log entry, if this node leads. A node
// that is starting serves forwards before its raft runs (Open): a follower
// still forwards to it if it led before a crash.
func (n *Node) serveForward(ctx context.Context, entry []byte) forwardResponse {
	inst := n.current()
	if inst == nil || inst.raft.State() != raft.Leader {
		return forwardResponse{Err: encodeError(ErrNoLeader)}
	}
	index, err := n.applyLocal(ctx, inst, entry)
	return forwardResponse{Index: index, Err: encodeError(err)}
}

// neverArrived reports whether a forwarded write failed before it could
// reach a leader: no leader was known, or the request was never sent.
func neverArrived(err error) bool {
	if errors.Is(err, ErrNoLeader) && !errors.Is(err, ErrNodeUnavailable) {
		return true
	}
	return errors.Is(err, errNotSent)
}

// raftError returns the error a client is told for an error of raft's
// Apply or of a membership change, or nil if it is not one of those that
// say what became of the change.
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrNoLeader // the change never made it into the log
	case errors.Is(err, raft.ErrLeadershipLost):
		return ErrLeadershipLost
	case errors.Is(err, ErrDiskFull), errors.Is(err, ErrDiskFailed):
		return err // the change is not in the log (see faultLog)
	}
	return nil
}

// applyTimeoutFor is how long raft may take to apply a write of ctx:
// applyTimeout, or less if ctx ends sooner.
func applyTimeoutFor(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return min(applyTimeout, time.Until(d))
	}
	return applyTimeout
}

// applyLocal applies data on the leader and returns the entry's index.
func (n *Node) applyLocal(ctx context.Context, inst *instance, data []byte) (uint64, error) {
	if state.IsRestoreEntry(data) {
		return n.restoreLocal(ctx, inst, data)
	}
	if err := n.checkEntry(inst, data); err != nil {
		return 0, err
	}
	timeout := applyTimeoutFor(ctx)
	n.restoring.RLock()
	f := inst.raft.Apply(data, timeout)
	n.restoring.RUnlock()
	if err := f.Error(); err != nil {
		if known := raftError(err); known != nil {
			return 0, known
		}
		return 0, fmt.Errorf("failed to replicate write: %w", err)
	}
	n.reads.waitFollowers(ctx, inst, f.Index())
	if err, ok := f.Response().(error); ok {
		return f.Index(), err
	}
	return f.Index(), nil
}

// restoreLocal restores a backup on the leader: data is a restore entry,
// which is checked as State.Apply would check it, turned into the raft
// snapshot of the state it makes (State.RestoreSnapshot) and installed
// with raft's user restore. The leader's state takes it at once; raft
// leaves a gap in the log after it, so followers receive it as a snapshot
// (InstallSnapshot), and Restore returns once a majority has a no-op
// entry after the gap. Nothing of the backup enters the log, which takes
// at most 64 MiB per entry (raft-wal), a few hundred thousand keys; a
// backup of a million keys is some 300 MB. Writes wait meanwhile (see
// restoring), so that none is applied to the state the snapshot replaces.
func (n *Node) restoreLocal(ctx context.Context, inst *instance, data []byte) (uint64, error) {
	n.restoring.Lock()
	defer n.restoring.Unlock()
	timeout := applyTimeoutFor(ctx)
	// Every write handed to raft before is applied: the snapshot is made
	// from the state they leave.
	if err := inst.raft.Barrier(timeout).Error(); err != nil {
		if known := raftError(err); known != nil {
			return 0, known
		}
		return 0, fmt.Errorf("failed to restore backup: %w", err)
	}
	if err := n.checkEntry(inst, data); err != nil {
		return 0, err
	}
	// The snapshot goes to a file beside the node's data, not to memory,
	// where it would sit (hundreds of MB) beside the state it restores.
	snap, size, err := n.restoreSnapshotFile(data)
	if err != nil {
		return 0, err
	}
	defer func() {
		snap.Close()
		os.Remove(snap.Name())
	}()
	// Raft panics if the state refuses the snapshot it installs: that
	// snapshot was made and checked just now from this state. Its timeout
	// also bounds the no-op entry after the installation, which takes
	// seconds at a million keys: it gets what is left of the request's.
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}
	last := inst.raft.LastIndex()
	if err := inst.raft.Restore(meta, bufio.NewReaderSize(snap, 1<<20), timeout); err != nil {
		if inst.raft.LastIndex() != last {
			// Installed here, but the no-op entry after it did not
			// commit: this node's log is the longest, so the next leader
			// most likely holds the restore, but nothing confirmed it.
			return 0, fmt.Errorf("%w: %w", ErrLeadershipLost, err)
		}
		if known := raftError(err); known != nil {
			return 0, known
		}
		return 0, fmt.Errorf("failed to restore backup: %w", err)
	}
	index := inst.raft.LastIndex()
	n.reads.waitFollowers(ctx, inst, index)
	return index, nil
}

// restoreSnapshotFile writes the snapshot of the restore entry data
// (State.RestoreSnapshot) to a temporary file in the data directory (the
// system's in dev mode) and returns it, at its start, with its size. The
// caller closes and removes it.
func (n *Node) restoreSnapshotFile(data []byte) (*os.File, int64, error) {
	f, err := os.CreateTemp(n.cfg.Dir, restoreTempPattern)
	if err != nil {
		return nil, 0, fmt.Errorf("failed to restore backup: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = n.cfg.State.RestoreSnapshot(data, w)
	if err == nil {
		err = w.Flush()
	}
	var size int64
	if err == nil {
		if size, err = f.Seek(0, io.SeekCurrent); err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			err = fmt.Errorf("failed to restore backup: %w", err)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	return f, size, nil
}

// checkEntry refuses an entry that this leader's state does not hold
// authentic, before it enters the log, where it would stop every node that
// applies it. A node makes one when its state changes under a write it is
// answering: it joins a cluster, or starts over as a fresh one, and a
// write encoded under the old root key reaches the new cluster (its own
// log, or the leader it now forwards to). The leader's state may also lag
// a root key change (a restore) that a follower has applied: it checks
// again once it has applied what it committed.
func (n *Node) checkEntry(inst *instance, data []byte) error {
	err := n.cfg.State.CheckEntry(data)
	if errors.Is(err, state.ErrNotAuthentic) {
		if barrier := inst.raft.Barrier(applyTimeout).Error(); barrier == nil {
			err = n.cfg.State.CheckEntry(data)
		}
	}
	if errors.Is(err, state.ErrNotAuthentic) {
		return fmt.Errorf("%w: the write was made by a node whose state was not this cluster's (it joined or left a cluster meanwhile): try again: %w", state.ErrNotInitialized, err)
	}
	return err
}

// IsLeader reports whether this node leads its cluster now: work that one
// node must do for the cluster (see service.RunLifecycle) runs there.
func (n *Node) IsLeader() bool { return n.current().raft.State() == raft.Leader }

// Writable reports whether this node can take writes now: it leads, or it
// follows a leader it has heard from recently.
func (n *Node) Writable() bool {
	inst := n.current()
	if inst.diskFault() != nil {
		return false
	}
	switch inst.raft.State() {
	case raft.Leader:
		return true
	case raft.Follower:
		leader, _ := inst.raft.LeaderWithID()
		return leader != "" && time.Since(inst.raft.LastContact()) < 2*heartbeatTimeout
	default:
		return false
	}
}

// AwaitReads prepares this node to serve a read. It returns ErrRemoved if
// the node is no longer part of a cluster, and ErrStale if it has been cut
// off from the leader for longer than the staleness bound. A follower that
// follows a leader first makes sure its state holds every write the leader
// has acknowledged (see lease), waiting a little if it must; the leader
// serves at once.
func (n *Node) AwaitReads() error {
	inst := n.current()
	if err := n.gone(inst); err != nil {
		return err
	}
	return n.reads.admit(inst)
}

// Close stops raft and closes the stores.
func (n *Node) Close() error {
	select {
	case <-n.done:
	default:
		close(n.done)
	}
	n.fwd.close()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.inst == nil || n.inst.stopped {
		return nil
	}
	// The stopped instance stays: requests still in flight see raft shut
	// down and get ErrShuttingDown.
	return n.inst.stop()
}

// gone returns why this node serves nothing: it is shutting down, or it
// was removed from its cluster; nil if neither.
func (n *Node) gone(inst *instance) error {
	select {
	case <-n.done:
		return ErrShuttingDown
	default:
	}
	if inst.raft.State() == raft.Shutdown || n.members.removed.Load() {
		return ErrRemoved
	}
	return n.fsm.failure()
}

// upgradeRetry is how often a node whose data directory is being upgraded
// checks whether it can finish the upgrade.
const upgradeRetry = time.Second

// finishUpgrade completes the upgrade of a data directory written by an
// earlier version of Keep (see tryFinishUpgrade), now or, if the node is
// not there yet, in the background.
func (n *Node) finishUpgrade(inst *instance) error {
	if !inst.stores.upgrading {
		return nil
	}
	if done, err := n.tryFinishUpgrade(inst); done || err != nil {
		return err
	}
	go func() {
		tick := time.NewTicker(upgradeRetry)
		defer tick.Stop()
		for {
			select {
			case <-n.done:
				return
			case <-tick.C:
			}
			if n.current() != inst {
				return // reset or edited: the new stores are not being upgraded
			}
			if done, err := n.tryFinishUpgrade(inst); done || err != nil {
				if err != nil {
					n.cfg.Logger.Error("upgrade of the data directory failed", "err", err)
				}
				return
			}
		}
	}()
	return nil
}

// tryFinishUpgrade finishes the upgrade once no legacy entry can reach this
// node any more: it has applied everything the cluster committed, and the
// commit index has passed the legacy entries of its own log. A leader's log
// holds its legacy entries before the entries of its current term, so a
// node that has applied an entry past them has applied every legacy entry
// it will ever get. Then it takes a snapshot (authenticated, key material
// sealed under the new AAD), compacts the whole log up to it so that no
// legacy entry is ever sent to a follower, and marks the directory, after
// which nothing unauthenticated is accepted.
func (n *Node) tryFinishUpgrade(inst *instance) (bool, error) {
	st := inst.stores
	commit := inst.raft.CommitIndex()
	if commit <= st.legacyLast || inst.raft.AppliedIndex() < commit || n.fsm.failure() != nil {
		return false, nil
	}
	conf := inst.raft.ReloadableConfig()
	compact := conf
	compact.TrailingLogs = 0
	if err := inst.raft.ReloadConfig(compact); err != nil {
		return false, fmt.Errorf("failed to upgrade the data directory: %w", err)
	}
	n.fsm.finishing.Store(true)
	err := inst.raft.Snapshot().Error()
	n.fsm.finishing.Store(false)
	if rerr := inst.raft.ReloadConfig(conf); err == nil {
		err = rerr
	}
	if err != nil {
		n.cfg.Logger.Debug("upgrade of the data directory postponed: no snapshot could be taken", "err", err)
		return false, nil
	}
	if err := st.markUpgraded(); err != nil {
		return false, err
	}
	n.fsm.legacyLast.Store(0)
	n.fsm.upgrading.Store(false)
	n.cfg.Logger.Info("data directory upgraded: its snapshots and log entries are authenticated from now on", "dir", n.cfg.Dir)
	return true, nil
}

// offlineTransport is the transport for raft functions that work on the
// stores of a stopped node and send nothing.
func offlineTransport() raft.Transport {
	_, t := raft.NewInmemTransport("")
	return t
}
