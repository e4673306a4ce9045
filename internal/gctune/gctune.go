// Package gctune sets the garbage collector's target from the live heap.
//
// A node's live heap is its state: a few MiB for most deployments, where
// a generous target (GOGC 400) trades a few MiB for markedly less GC CPU
// per request; but some 600 MiB at a million keys, where the same target
// would let the heap grow to 3 GiB. The policy keeps the generous target
// while it costs little and, as the state grows, lowers it so that the
// heap grows at most a fixed headroom above the live heap between
// collections.
package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Policy bounds the garbage collector's target, in percent of the live
// heap (Go's GOGC).
type Policy struct {
	Max, Min int    // the target's bounds, in percent
	Headroom uint64 // bytes the heap may grow past the live heap, unless Min allows more
}

// Default is a node's policy: GOGC 400 up to a live heap of 64 MiB, then
// 256 MiB of headroom, and no less than GOGC 25 (a collection per quarter
// of the live heap allocated) however large the state.
var Default = Policy{Max: 400, Min: 25, Headroom: 256 << 20}

// Percent returns the target for a live heap of live bytes.
func (p Policy) Percent(live uint64) int {
	if live == 0 {
		return p.Max
	}
	pct := float64(p.Headroom) / float64(live) * 100
	return max(p.Min, min(p.Max, int(pct)))
}

// liveHeap is the runtime's count of heap bytes that the last collection
// found live.
const liveHeap = "/gc/heap/live:bytes"

// Run sets the target of p now and then every interval until ctx ends.
// It changes the target only when it moves by more than an eighth:
// setting it stops the world.
func Run(ctx context.Context, p Policy, every time.Duration) {
	sample := []metrics.Sample{{Name: liveHeap}}
	current := -1
	apply := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // not this runtime's metric: keep what is set
		}
		want := p.Percent(sample[0].Value.Uint64())
		if current < 0 || abs(want-current) > current/8 {
			debug.SetGCPercent(want)
			current = want
		}
	}
	apply()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			apply()
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
