package cluster

import (
	"context"
	"errors"
	"testing"
)

// TestServeForwardWhileStarting checks that a node whose raft does not run
// yet (Open registers the forward service first) refuses a forwarded
// write as one without a leader instead of crashing: a follower forwards
// to a restarted node that led before it was killed.
func TestServeForwardWhileStarting(t *testing.T) {
	var n Node
	resp := n.serveForward(context.Background(), []byte("entry"))
	if err := decodeError(resp.Err); !errors.Is(err, ErrNoLeader) {
		t.Errorf("forward to a starting node: %v, want %v", err, ErrNoLeader)
	}
}
