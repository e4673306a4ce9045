package cluster

import (
	"testing"

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
