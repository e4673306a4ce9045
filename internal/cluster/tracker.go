package cluster

import (
	"context"
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
	changed chan struct{} // closed and replaced on every report
}

type report struct {
	index uint64
	at    time.Time
}

func newTracker() *tracker {
	return &tracker{reports: map[raft.ServerID]report{}, changed: make(chan struct{})}
}

// update records that follower id has applied the log up to index.
func (t *tracker) update(id raft.ServerID, index uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if index > t.reports[id].index {
		t.reports[id] = report{index: index, at: time.Now()}
	} else {
		r := t.reports[id]
		r.at = time.Now()
		t.reports[id] = r
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// wait returns once every healthy follower has applied index, or bound has
// passed. Followers that have not reported recently are not waited for.
func (t *tracker) wait(ctx context.Context, index uint64, followers []raft.ServerID, bound time.Duration) {
	if len(followers) == 0 {
		return
	}
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		t.mu.Lock()
		done, changed := true, t.changed
		for _, id := range followers {
			r, ok := t.reports[id]
			if ok && time.Since(r.at) < reportTTL && r.index < index {
				done = false
				break
			}
		}
		t.mu.Unlock()
		if done || !awaitChange(ctx, changed, timer) {
			return
		}
	}
}

// awaitChange waits until changed is closed, and reports false instead if
// timer fires or ctx ends first.
func awaitChange(ctx context.Context, changed <-chan struct{}, timer *time.Timer) bool {
	select {
	case <-changed:
		return true
	case <-timer.C:
	case <-ctx.Done():
	}
	return false
}
