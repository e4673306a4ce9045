package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
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

// testInstance runs raft in memory as node "a": with bootstrap, as the
// leader of a one-node cluster (it waits for the election); without, as a
// follower that has no leader and has never heard from one.
func testInstance(t *testing.T, bootstrap bool) *instance {
	t.Helper()
	conf := raft.DefaultConfig()
	conf.LocalID = "a"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.Logger = raftLogger()
	logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	addr, trans := raft.NewInmemTransport("")
	if bootstrap {
		err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, raft.Configuration{Servers: []raft.Server{{ID: "a", Address: addr}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := raft.NewRaft(conf, &raft.MockFSM{}, logs, logs, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown().Error() })
	if bootstrap {
		select {
		case <-r.LeaderCh():
		case <-time.After(10 * time.Second):
			t.Fatal("no leader elected")
		}
	}
	return &instance{raft: r, id: "a", stores: &stores{logs: logs}}
}
