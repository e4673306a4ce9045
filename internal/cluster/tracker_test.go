package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestTrackerWait(t *testing.T) {
	const a, b = raft.ServerID("a"), raft.ServerID("b")
	type update struct {
		id    raft.ServerID
		index uint64
	}
	for _, tc := range []struct {
		name     string
		before   []update // reports before the wait
		during   []update // reports while it waits
		index    uint64
		wantDone bool // released by reports, not by the bound
	}{
		{"nobody reported", nil, nil, 5, true},
		{"all applied already", []update{{a, 5}, {b, 6}}, nil, 5, true},
		{"released by the last report", []update{{a, 1}, {b, 1}}, []update{{a, 5}, {b, 4}, {b, 5}}, 5, true},
		{"one follower behind", []update{{a, 1}, {b, 1}}, []update{{a, 5}, {b, 4}}, 5, false},
		{"a late, older report does not go back", []update{{a, 9}, {b, 1}}, []update{{a, 2}, {b, 5}}, 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			for _, u := range tc.before {
				tr.update(u.id, u.index)
			}
			released := make(chan time.Duration, 1)
			const bound = 200 * time.Millisecond
			go func() {
				start := time.Now()
				tr.wait(context.Background(), tc.index, []raft.ServerID{a, b}, bound)
				released <- time.Since(start)
			}()
			for _, u := range tc.during {
				time.Sleep(5 * time.Millisecond)
				tr.update(u.id, u.index)
			}
			took := <-released
			if done := took < bound; done != tc.wantDone {
				t.Errorf("wait returned after %v (bound %v); want released by reports: %v", took, bound, tc.wantDone)
			}
			if n := len(tr.waiters); n != 0 {
				t.Errorf("%d waiters left behind", n)
			}
		})
	}
}

// TestTrackerSkipsSilentFollowers checks that a follower whose last report
// is older than reportTTL is not waited for.
func TestTrackerSkipsSilentFollowers(t *testing.T) {
	tr := newTracker()
	tr.update("a", 1)
	tr.update("b", 1)
	tr.mu.Lock()
	tr.reports["b"] = report{index: 1, at: time.Now().Add(-reportTTL)}
	tr.mu.Unlock()
	done := make(chan struct{})
	go func() {
		tr.wait(context.Background(), 5, []raft.ServerID{"a", "b"}, time.Minute)
		close(done)
	}()
	time.Sleep(5 * time.Millisecond)
	tr.update("a", 5)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the leader still waits for a follower that went silent")
	}
}
