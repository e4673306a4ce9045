package state_test

import (
	"io"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/state"
)

// captureAndPersist writes a snapshot of s to w as raft takes one, and
// returns the time spent capturing (raft's FSM.Snapshot, which blocks
// Apply) and encoding (FSMSnapshot.Persist, beside Apply). It is apart
// from BenchmarkScale so that the benchmark runs on earlier versions of
// Keep, whose snapshot is all capture, with this file replaced.
func captureAndPersist(b *testing.B, s *state.State, w io.Writer) (capture, persist time.Duration) {
	start := time.Now()
	c, err := s.Capture()
	if err != nil {
		b.Fatal(err)
	}
	captured := time.Now()
	if err := c.Encode(w); err != nil {
		b.Fatal(err)
	}
	return captured.Sub(start), time.Since(captured)
}
