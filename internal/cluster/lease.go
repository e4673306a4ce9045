package cluster

import (
	"sync"
	"time"
)

// A follower serves reads from its own state, and the leader makes that
// safe by waiting, before it acknowledges a write, until every follower it
// counts as healthy has applied it (tracker.wait). A follower must
// therefore know whether the leader counts it: a read on a follower the
// leader does not count (it just started, the leader just changed, its
// reports were cut off) could miss an acknowledged write.
//
// The leader echoes each report on the report stream; an echo means "I
// counted you when this report arrived, and had applied up to index
// fence". The leader counts a follower for reportTTL after a report
// arrives, so the follower holds a lease until the report's send time plus
// reportTTL, less a margin. A lease that starts afresh (none before, or a
// new leader, or the old one lapsed) brings a fence: every write the leader
// acknowledged before it counted this follower is at or below the fence,
// and the follower serves reads only once it has applied it.

// leaseMargin is how much earlier than the leader a follower gives up its
// lease, for the time a report takes to arrive.
const leaseMargin = 250 * time.Millisecond

// echoInterval is the shortest time between two echoes to one follower.
const echoInterval = 100 * time.Millisecond

// leaseWait bounds how long a read on a follower waits for a lease when it
// has a leader but no lease yet; the report stream is opened within a few
// milliseconds of learning the leader. After it, the read is served from
// the follower's state as it is (bounded staleness).
const leaseWait = 200 * time.Millisecond

// startLeaseWait bounds how long a starting follower waits for its first
// lease before it serves: its log may lack writes the cluster acknowledged
// while it was down, which raft's commit index, capped by the follower's
// own log, does not tell it.
const startLeaseWait = 5 * time.Second

// applyWait bounds how long a read or a forwarded write waits for this
// node to apply what it must; after it, it is served from the state as it
// is. startApplyWait is the same for a starting node, which serves nothing
// before its state holds what the cluster acknowledged: the settings that
// decide who the admin is among it.
const (
	applyWait      = time.Second
	startApplyWait = 20 * time.Second
)

// lease is what a follower knows of the leader counting it.
type lease struct {
	mu      sync.Mutex
	leader  string
	fence   uint64
	until   time.Time
	changed chan struct{} // closed and replaced on every renewal
}

func newLease() *lease { return &lease{changed: make(chan struct{})} }

// renew records an echo from leader of a report sent at sent, when the
// leader had applied up to leaderApplied.
func (l *lease) renew(leader string, sent time.Time, leaderApplied uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.leader != leader || !time.Now().Before(l.until) {
		l.leader, l.fence = leader, leaderApplied
	}
	l.until = sent.Add(reportTTL - leaseMargin)
	close(l.changed)
	l.changed = make(chan struct{})
}

// drop ends the lease of leader, if this follower holds one: the report
// stream to it ended.
func (l *lease) drop(leader string) {
	l.mu.Lock()
	if l.leader == leader {
		l.leader, l.until = "", time.Time{}
	}
	l.mu.Unlock()
}

// fenceFor returns the index this follower must have applied before it
// serves a read, while it holds a lease from leader; ok is false without
// one.
func (l *lease) fenceFor(leader string) (fence uint64, ok bool, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fence, l.leader == leader && time.Now().Before(l.until), l.changed
}
