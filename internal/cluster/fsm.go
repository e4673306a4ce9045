package cluster

import (
	"bytes"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/keep-kms/keep/internal/state"
)

// fsm adapts state.State to raft.FSM. Apply returns the write's error (or
// nil) as the future's response, so that the proposer can hand it back to
// the client.
type fsm struct {
	state   *state.State
	notify  chan struct{} // signalled after each applied command; may be nil
	applied atomic.Uint64 // index of the last applied command
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	err := f.state.Apply(l.Data)
	// Recorded here, not read from raft.AppliedIndex, which raft updates
	// only after Apply returns: a report sent on this signal must already
	// cover this entry.
	f.applied.Store(l.Index)
	if f.notify != nil {
		signal(f.notify)
	}
	return err
}

// Snapshot encodes the state right away: raft calls it on the FSM's
// goroutine, and the encoding is a consistent copy that Persist may then
// write at leisure.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	var buf bytes.Buffer
	if err := f.state.Snapshot(&buf); err != nil {
		return nil, err
	}
	return &fsmSnapshot{data: buf.Bytes()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.state.Restore(rc)
}

type fsmSnapshot struct{ data []byte }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
