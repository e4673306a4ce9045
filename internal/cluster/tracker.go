package cluster

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Followers report at least every reportInterval; a follower that has not
// reported for reportTTL is not healthy, and the leader does not wait for it.
const (
	reportInterval = 250 * time.Millisecond
	reportTTL      = 2 * time.Second
)

// tracker is the leader's record of how far each follower has applied the
// log, from the reports followers send after applying entries.
type tracker struct {
	mu      sync.Mutex
	reports map[raft.ServerID]report
	// waiters are the writes waiting for followers. Each report releases
	// the ones it completes, and only those: under load, reports arrive
	// thousands of times a second with dozens of writes waiting.
	waiters []*waiter
}

type report struct {
	index uint64
	at    time.Time
}

type waiter struct {
	index     uint64
	followers []raft.ServerID
	done      chan struct{} // closed when every healthy follower applied index
}

func newTracker() *tracker {
	return &tracker{reports: map[raft.ServerID]report{}}
}

// update records that follower id has applied the log up to index.
func (t *tracker) update(id raft.ServerID, index uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.reports[id]
	r.index = max(r.index, index)
	r.at = time.Now()
	t.reports[id] = r
	t.waiters = slices.DeleteFunc(t.waiters, func(w *waiter) bool {
		if t.appliedLocked(w.index, w.followers) {
			close(w.done)
			return true
		}
		return false
	})
}

// appliedLocked reports whether every healthy follower has applied index.
// Followers that have not reported recently are not waited for.
func (t *tracker) appliedLocked(index uint64, followers []raft.ServerID) bool {
	for _, id := range followers {
		r, ok := t.reports[id]
		if ok && time.Since(r.at) < reportTTL && r.index < index {
			return false
		}
	}
	return true
}

// wait returns once every healthy follower has applied index, or bound has
// passed.
func (t *tracker) wait(ctx context.Context, index uint64, followers []raft.ServerID, bound time.Duration) {
	t.mu.Lock()
	if t.appliedLocked(index, followers) {
		t.mu.Unlock()
		return
	}
	w := &waiter{index: index, followers: followers, done: make(chan struct{})}
	t.waiters = append(t.waiters, w)
	t.mu.Unlock()

	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-w.done:
		return
	case <-timer.C:
	case <-ctx.Done():
	}
	t.mu.Lock()
	if i := slices.Index(t.waiters, w); i >= 0 {
		t.waiters = slices.Delete(t.waiters, i, i+1)
	}
	t.mu.Unlock()
}
