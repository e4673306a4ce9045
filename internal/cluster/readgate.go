package cluster

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// readGate decides when this node's state may serve a read: it runs both
// ends of the read-lease protocol (docs/ARCHITECTURE.md, "The read-lease
// protocol"). As a follower it streams reports of how far it has applied
// the log to the leader (report.go), holds the lease the leader's echoes
// grant (lease.go), and makes reads and forwarded writes wait for the
// lease's fence and their own index. As the leader it records the
// followers' reports (tracker.go), echoes them, and makes a write wait for
// the healthy followers before it is acknowledged.
type readGate struct {
	// current returns the node's running raft instance; nil before raft
	// starts.
	current func() *instance
	// fsmApplied is the index of the last command the node's FSM applied.
	fsmApplied *atomic.Uint64
	// transport carries the reports to the leader, and tells the leader
	// that a report stream comes from a node.
	transport *Transport
	// maxStaleness is Config.MaxStaleness.
	maxStaleness func() time.Duration
	started      time.Time       // report send times count from it
	done         <-chan struct{} // closed when the node shuts down

	applied *tracker      // on the leader: how far followers have applied
	lease   *lease        // on a follower: whether the leader counts it
	notify  chan struct{} // signalled by the FSM when it applies an entry
	nudge   chan struct{} // signalled when the leader waits for followers to apply
}

func newReadGate(current func() *instance, fsmApplied *atomic.Uint64, notify chan struct{}, transport *Transport, maxStaleness func() time.Duration, started time.Time, done <-chan struct{}) *readGate {
	return &readGate{
		current:      current,
		fsmApplied:   fsmApplied,
		transport:    transport,
		maxStaleness: maxStaleness,
		started:      started,
		done:         done,
		applied:      newTracker(),
		lease:        newLease(),
		notify:       notify,
		nudge:        make(chan struct{}, 1),
	}
}

// run runs the gate's loops until done is closed: the follower's reports,
// and the leader's nudges.
func (g *readGate) run() {
	go g.reportApplied()
	go g.nudgeFollowers()
}

// admit prepares inst, the running instance of a node that serves, to
// serve a read (see Node.AwaitReads): the leader serves at once; a follower
// cut off from the leader for longer than the staleness bound refuses
// with ErrStale; a follower that follows a leader first makes sure its
// state holds every write the leader has acknowledged, waiting a little
// if it must.
func (g *readGate) admit(inst *instance) error {
	if inst.raft.State() == raft.Leader {
		return nil
	}
	var bound time.Duration
	if g.maxStaleness != nil {
		bound = g.maxStaleness()
	}
	if bound > 0 && time.Since(inst.raft.LastContact()) > bound {
		return ErrStale
	}
	if since, ok := inst.faultSince(); ok {
		// A follower that cannot write its log takes no new entries,
		// and gets no lease (it stopped reporting): it serves its state
		// as it is, at once, for as long as the staleness bound allows,
		// counted from the fault (the leader's heartbeats still arrive).
		if bound > 0 && time.Since(since) > bound {
			return ErrStale
		}
		return nil
	}
	if leader, _ := inst.raft.LeaderWithID(); leader != "" {
		g.awaitReads(context.Background(), inst, string(leader), leaseWait, applyWait)
	}
	return nil
}

// awaitReads returns once a read on this follower sees every write the
// leader has acknowledged: it holds a lease and has applied its fence. It
// gives up after wait without a lease, and after applyFor of applying
// towards the fence, and then the read is served from the state as it is.
func (g *readGate) awaitReads(ctx context.Context, inst *instance, leader string, wait, applyFor time.Duration) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		fence, ok, changed := g.lease.fenceFor(leader)
		if ok {
			if !g.hasApplied(inst, fence) {
				g.waitApplied(ctx, fence, applyFor)
			}
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// waitApplied waits, at most bound, until this node has applied index.
func (g *readGate) waitApplied(ctx context.Context, index uint64, bound time.Duration) {
	if g.hasApplied(g.current(), index) {
		return // the common case: no timer to set up
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for !g.hasApplied(g.current(), index) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// waitFollowers waits, on the leader inst, until every healthy follower
// has applied index, or followerWait has passed.
func (g *readGate) waitFollowers(ctx context.Context, inst *instance, index uint64) {
	if followers := followers(inst); len(followers) > 0 {
		signal(g.nudge)
		g.applied.wait(ctx, index, followers, followerWait)
	}
}

// nudgeFollowers makes followers learn of new commits right away. Raft
// tells followers the commit index with the next append, or after
// CommitTimeout when none comes; a lone write would wait for that before
// the followers apply it. A barrier is such an append. One barrier is under
// way at a time, and writes committed meanwhile are covered by the next;
// under load the appends of other writes do the job and barriers are few.
func (g *readGate) nudgeFollowers() {
	for {
		select {
		case <-g.done:
			return
		case <-g.nudge:
		}
		if inst := g.current(); inst != nil && inst.raft.State() == raft.Leader {
			inst.raft.Barrier(applyTimeout).Error()
		}
	}
}

// signal notifies c without blocking; c has room for one notification.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// followers returns the IDs of the other voters.
func followers(inst *instance) []raft.ServerID {
	f := inst.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var ids []raft.ServerID
	for _, s := range f.Configuration().Servers {
		if s.ID != inst.id {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// hasApplied reports whether this node's state reflects the log up to
// index. Reads ask it: the FSM's own count answers most of them without
// the cost of appliedIndex.
func (g *readGate) hasApplied(inst *instance, index uint64) bool {
	return g.fsmApplied.Load() >= index || g.appliedIndex(inst) >= index
}

// appliedIndex is how far this node's state reflects the log: what a
// follower reports to the leader, and what a read or a forwarded write
// waits for. See appliedThrough.
func (g *readGate) appliedIndex(inst *instance) uint64 {
	return appliedThrough(g.fsmApplied.Load(), inst.raft.AppliedIndex(), inst.stores.logs, func() uint64 {
		// Stats is costly; it is asked only when a command is queued.
		s, _ := strconv.ParseUint(inst.raft.Stats()["last_snapshot_index"], 10, 64)
		return s
	})
}

// appliedThrough is how far the state reflects the log, from the last
// command the FSM applied and raft's AppliedIndex (queued). Raft's index
// also covers the entries that never reach the FSM (no-ops,
// configurations, barriers) and snapshots, but raft advances it as soon as
// it queues commands for the FSM, before they are applied: a follower that
// replays its log after a restart runs hundreds of entries behind it, and
// counting those would let the leader acknowledge a write the follower
// does not serve yet. So the entries after applied count up to the first
// command among them that the latest snapshot (raft's, which the state
// holds: restored, or taken from it) does not cover; entries below the
// log's first index were compacted into it. Unsure (the log cannot be
// read), it says applied.
func appliedThrough(applied, queued uint64, logs raft.LogStore, snapshot func() uint64) uint64 {
	if queued <= applied {
		return applied
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return applied
	}
	var l raft.Log
	snap := uint64(0)
	asked := false
	for i := max(applied+1, first); i <= queued; i++ {
		if err := logs.GetLog(i, &l); err == nil && l.Type != raft.LogCommand {
			continue
		}
		if !asked {
			snap, asked = snapshot(), true
		}
		if snap < i {
			return i - 1
		}
		i = snap // the snapshot covers the entries up to it
	}
	return queued
}
