// Package usage counts how each key version is used, on every node and
// summed over the cluster.
//
// Every node counts the generates and decrypts of each key version in a
// Counter, on the hot path, with atomic operations only. A Reporter on
// every node moves what its counters gathered into Report values, which
// the node proposes as log entries; every node applies them into its Table
// (part of the replicated state), which keeps, per key version, the last
// generate and decrypt and the counts per UTC day of the last 30 days.
package usage

import (
	"sync"
	"sync/atomic"
	"time"
)

// clock is the current time in Unix seconds, updated once a second: the
// hot path stamps the last use with it instead of calling time.Now.
var (
	clock     atomic.Int64
	clockOnce sync.Once
)

// startClock starts the process-wide coarse clock the counters read. It
// ticks for the life of the process, like the runtime's own timers.
func startClock() {
	clock.Store(time.Now().Unix())
	go func() {
		for t := range time.Tick(time.Second) {
			clock.Store(t.Unix())
		}
	}()
}

// Counter counts the use of one key version on one node since its last
// report. It is safe for concurrent use; Generated and Decrypted cost an
// atomic add and an atomic store each.
type Counter struct {
	generates    atomic.Uint64
	decrypts     atomic.Uint64
	lastGenerate atomic.Int64 // Unix seconds; 0: never on this node
	lastDecrypt  atomic.Int64
}

// NewCounter returns a counter of nothing yet.
func NewCounter() *Counter {
	clockOnce.Do(startClock)
	return new(Counter)
}

// Generated counts one data key generated (or plaintext encrypted) with the
// version.
func (c *Counter) Generated() {
	// The time first: take, which sees the count, then sees the time too.
	c.lastGenerate.Store(clock.Load())
	c.generates.Add(1)
}

// Decrypted counts one ciphertext decrypted with the version.
func (c *Counter) Decrypted() {
	c.lastDecrypt.Store(clock.Load())
	c.decrypts.Add(1)
}

// take moves the counts out of c, for a report, and returns them with the
// last uses. A use that happens while take runs is either in this take's
// counts or in the next one's, never lost: the counts are swapped, not
// read and cleared.
func (c *Counter) take() (v VersionReport, used bool) {
	v.Generates = c.generates.Swap(0)
	v.Decrypts = c.decrypts.Swap(0)
	if v.Generates > 0 {
		v.LastGenerate = unixTime(c.lastGenerate.Load())
	}
	if v.Decrypts > 0 {
		v.LastDecrypt = unixTime(c.lastDecrypt.Load())
	}
	return v, v.Generates > 0 || v.Decrypts > 0
}

func unixTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}
