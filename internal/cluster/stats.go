package cluster

import (
	"time"

	"github.com/hashicorp/raft"
)

// RaftStats is a node's raft state, as monitoring shows it.
type RaftStats struct {
	Role         string // Leader, Follower, Candidate or Shutdown
	Term         uint64
	LastIndex    uint64 // of the last entry in the log
	CommitIndex  uint64
	AppliedIndex uint64
	// LastContact is how long ago the leader was last heard from: 0 on
	// the leader, negative if never.
	LastContact time.Duration
	// LogFault is the *StorageError writes get while this node's raft log
	// cannot be written (a full or failing disk), nil while it can.
	LogFault error
	// Tampered is the ErrTampered with which this node stopped applying
	// its log (a record that is not authentic), nil while it applies.
	// raft's applied index goes on regardless: raft counts the entries it
	// handed to the state machine, which refuses them.
	Tampered error
}

// RaftStats reports this node's raft state. It is cheap enough for every
// scrape: nothing goes through raft's main loop.
func (n *Node) RaftStats() RaftStats {
	inst := n.current()
	if inst == nil {
		return RaftStats{Role: raft.Shutdown.String(), LastContact: -1, Tampered: n.fsm.failure()}
	}
	r := inst.raft
	s := RaftStats{
		Role:         r.State().String(),
		Term:         r.CurrentTerm(),
		LastIndex:    r.LastIndex(),
		CommitIndex:  r.CommitIndex(),
		AppliedIndex: r.AppliedIndex(),
		LogFault:     inst.diskFault(),
		Tampered:     n.fsm.failure(),
	}
	switch last := r.LastContact(); {
	case r.State() == raft.Leader:
	case last.IsZero():
		s.LastContact = -1
	default:
		s.LastContact = time.Since(last)
	}
	return s
}
