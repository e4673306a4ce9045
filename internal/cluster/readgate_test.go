package cluster

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestAppliedThrough checks how far the state counts as applied between
// the FSM's last command and raft's AppliedIndex, which raft advances when
// it queues commands, before the FSM applies them. Taking raft's index
// (as before: the larger of the two) fails the cases "command queued" and
// "command queued behind a no-op": the node would report writes applied
// that its state does not hold.
func TestAppliedThrough(t *testing.T) {
	// Entries 1–10: commands, but 4 (configuration), 7 (no-op) and 8
	// (barrier).
	entries := func(first uint64) raft.LogStore {
		s := raft.NewInmemStore()
		for i := first; i <= 10; i++ {
			typ := raft.LogCommand
			switch i {
			case 4:
				typ = raft.LogConfiguration
			case 7:
				typ = raft.LogNoop
			case 8:
				typ = raft.LogBarrier
			}
			if err := s.StoreLog(&raft.Log{Index: i, Term: 1, Type: typ}); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	for _, tc := range []struct {
		name            string
		first           uint64 // the log's first index (after compaction)
		snapshot        uint64 // raft's latest snapshot
		applied, queued uint64
		want            uint64
	}{
		{"in step", 1, 0, 5, 5, 5},
		{"fsm ahead of raft", 1, 0, 6, 5, 6},
		{"command queued", 1, 0, 5, 6, 5},
		{"commands queued", 1, 0, 2, 10, 2},
		{"configuration applied", 1, 0, 3, 4, 4},
		{"no-op and barrier applied", 1, 0, 6, 8, 8},
		{"command queued behind a no-op", 1, 0, 6, 9, 8},
		{"compacted into a snapshot", 8, 7, 0, 7, 7},
		{"snapshot, then a command queued", 6, 5, 0, 6, 5},
		{"snapshot, no-ops after it", 7, 6, 0, 8, 8},
		{"restored snapshot covers the log's commands", 1, 6, 0, 6, 6},
		{"restored snapshot, a command queued after it", 1, 6, 0, 9, 8},
		{"restored snapshot, commands queued after it", 1, 6, 0, 10, 8},
	} {
		if got := appliedThrough(tc.applied, tc.queued, entries(tc.first), func() uint64 { return tc.snapshot }); got != tc.want {
			t.Errorf("%s: applied %d, raft %d: %d, want %d", tc.name, tc.applied, tc.queued, got, tc.want)
		}
	}
}

// testGate returns a gate over inst, whose FSM has applied up to applied.
func testGate(inst *instance, applied *atomic.Uint64, maxStaleness func() time.Duration) *readGate {
	return newReadGate(func() *instance { return inst }, applied, make(chan struct{}, 1), nil, maxStaleness, time.Now(), make(chan struct{}))
}

// TestReadGateAdmit checks who serves a read at once, and who refuses it as
// stale: the leader serves, whatever the staleness bound; a follower that
// has never heard from a leader (and so waits for no lease) serves without
// a bound and refuses with one.
func TestReadGateAdmit(t *testing.T) {
	leader, follower := testInstance(t, true), testInstance(t, false)
	bound := func(d time.Duration) func() time.Duration { return func() time.Duration { return d } }
	for _, tc := range []struct {
		name         string
		inst         *instance
		maxStaleness func() time.Duration
		want         error
	}{
		{"leader", leader, nil, nil},
		{"leader with a bound", leader, bound(time.Nanosecond), nil},
		{"follower without a bound", follower, nil, nil},
		{"follower with a bound of 0 (for ever)", follower, bound(0), nil},
		{"follower cut off for longer than the bound", follower, bound(time.Second), ErrStale},
	} {
		var applied atomic.Uint64
		start := time.Now()
		err := testGate(tc.inst, &applied, tc.maxStaleness).admit(tc.inst)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: took %v, want at once", tc.name, took)
		}
	}
}

// TestReadGateAwaitReads checks how long a read on a follower of leader L
// waits: not at all with a lease from L whose fence it has applied; until a
// lease arrives, or the wait bound; until it has applied the fence, or the
// apply bound.
func TestReadGateAwaitReads(t *testing.T) {
	const (
		l, other = "l:7373", "other:7373"
		bound    = time.Second
		early    = bound / 2
	)
	inst := testInstance(t, false) // its raft has applied nothing
	type event struct {
		renew   string // an echo from this leader, granting fence
		fence   uint64
		applied uint64 // else: the FSM applies up to it
	}
	for _, tc := range []struct {
		name       string
		applied    uint64  // by the FSM, before the read
		before     []event // before the read
		during     *event  // 50 ms into the read
		wantBounds bool    // the read waits out a bound
	}{
		{"no lease", 0, nil, nil, true},
		{"lease, fence applied", 5, []event{{renew: l, fence: 5}}, nil, false},
		{"lease from another leader", 5, []event{{renew: other, fence: 5}}, nil, true},
		{"lease arrives", 5, nil, &event{renew: l, fence: 5}, false},
		{"fence not applied", 4, []event{{renew: l, fence: 5}}, nil, true},
		{"fence applied meanwhile", 4, []event{{renew: l, fence: 5}}, &event{applied: 5}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var applied atomic.Uint64
			applied.Store(tc.applied)
			g := testGate(inst, &applied, nil)
			happen := func(e event) {
				if e.renew != "" {
					g.lease.renew(e.renew, time.Now(), e.fence)
				} else {
					applied.Store(e.applied)
				}
			}
			for _, e := range tc.before {
				happen(e)
			}
			if tc.during != nil {
				go func() {
					time.Sleep(50 * time.Millisecond)
					happen(*tc.during)
				}()
			}
			start := time.Now()
			g.awaitReads(context.Background(), inst, l, bound, bound)
			took := time.Since(start)
			if waited := took >= early; waited != tc.wantBounds || took > 3*bound {
				t.Errorf("the read waited %v; want a bound (%v) waited out: %v", took, bound, tc.wantBounds)
			}
		})
	}
}

// TestReadGateWaitFollowers checks that a leader without followers
// acknowledges a write at once.
func TestReadGateWaitFollowers(t *testing.T) {
	inst := testInstance(t, true)
	var applied atomic.Uint64
	g := testGate(inst, &applied, nil)
	start := time.Now()
	g.waitFollowers(context.Background(), inst, 1)
	if took := time.Since(start); took >= followerWait {
		t.Errorf("a leader without followers waited %v", took)
	}
}
