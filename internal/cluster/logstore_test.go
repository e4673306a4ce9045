package cluster

import (
	"context"
	"testing"

	"github.com/hashicorp/raft"
)

// TestTailTruncationSurvivesRestart truncates the tail of the raft log, as
// a follower does when a new leader replaced entries it had, appends the
// leader's entries, and opens the log again, as a restart does: every entry
// reads back, the replaced ones with the new leader's. With raft-wal v0.4.0
// alone the reopened log failed on entry 1 ("sealed segment has no index
// block"), and the node could not start.
func TestTailTruncationSurvivesRestart(t *testing.T) {
	dir, h := t.TempDir(), testHSM(t)
	st, err := openStores(context.Background(), dir, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.logs.StoreLogs(testLogs(1, 10)); err != nil {
		t.Fatal(err)
	}
	if err := st.logs.DeleteRange(8, 10); err != nil {
		t.Fatal(err)
	}
	replaced := testLogs(8, 12)
	for _, l := range replaced {
		l.Term = 2
	}
	if err := st.logs.StoreLogs(replaced); err != nil {
		t.Fatal(err)
	}
	for restart := range 2 {
		if err := st.close(); err != nil {
			t.Fatal(err)
		}
		if st, err = openStores(context.Background(), dir, h); err != nil {
			t.Fatalf("restart %d: %v", restart+1, err)
		}
		if first, last := logRange(t, st.logs); first != 1 || last != 12 {
			t.Fatalf("restart %d: the log holds entries %d to %d, want 1 to 12", restart+1, first, last)
		}
		for i := uint64(1); i <= 12; i++ {
			var l raft.Log
			if err := st.logs.GetLog(i, &l); err != nil {
				t.Fatalf("restart %d: entry %d: %v", restart+1, i, err)
			}
			if want := uint64(1) + uint64(min(1, i/8)); l.Term != want {
				t.Errorf("restart %d: entry %d has term %d, want %d", restart+1, i, l.Term, want)
			}
		}
		// Truncate the tail once more: the next restart reads two segments
		// sealed so.
		if err := st.logs.StoreLogs(testLogs(13, 13)); err != nil {
			t.Fatalf("restart %d: append: %v", restart+1, err)
		}
		if err := st.logs.DeleteRange(13, 13); err != nil {
			t.Fatal(err)
		}
	}
	st.close()
}

// TestLogAfterSnapshotInstall does to the raft log what raft does when a
// follower installs a snapshot past the log's end: raft empties a
// monotonic store (removeOldLogs), and the next append starts after the
// snapshot. The store must tell raft it is monotonic: raft otherwise only
// compacts it, and the append failed as "non-monotonic" and left the node
// refusing writes for good (TestRobustness, snapshot-install).
func TestLogAfterSnapshotInstall(t *testing.T) {
	dir, h := t.TempDir(), testHSM(t)
	st, err := openStores(context.Background(), dir, h)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	mono, ok := st.logs.(raft.MonotonicLogStore)
	if !ok || !mono.IsMonotonic() {
		t.Fatalf("the raft log (%T) does not tell raft it is monotonic", st.logs)
	}
	if err := st.logs.StoreLogs(testLogs(1, 10)); err != nil {
		t.Fatal(err)
	}
	// raft's removeOldLogs, for a snapshot at 50.
	last, err := st.logs.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.logs.DeleteRange(1, last); err != nil {
		t.Fatal(err)
	}
	if err := st.logs.StoreLogs(testLogs(51, 55)); err != nil {
		t.Fatalf("append after the snapshot: %v", err)
	}
	if first, last := logRange(t, st.logs); first != 51 || last != 55 {
		t.Errorf("the log holds entries %d to %d, want 51 to 55", first, last)
	}
}
