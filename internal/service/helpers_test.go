package service

import (
	"bytes"
	"context"
	"testing"

	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// localCluster applies entries to one state directly, as a one-node
// cluster does.
type localCluster struct{ st *state.State }

func (l localCluster) Apply(_ context.Context, e *state.Entry) error {
	data, err := l.st.EncodeEntry(e)
	if err != nil {
		return err
	}
	return l.st.Apply(data)
}
func (localCluster) AddNode(context.Context, string) error          { return nil }
func (localCluster) RemoveNode(context.Context, string, bool) error { return nil }
func (localCluster) Edit(context.Context, []string) error           { return nil }
func (localCluster) Restart(context.Context, bool) error            { return nil }
func (localCluster) AwaitReads() error                              { return nil }
func (localCluster) ClusterStatus(context.Context) (map[int]cluster.NodeStatus, map[int]string) {
	return nil, nil
}

// initializedState returns a state on a fresh soft HSM with the init entry
// applied, and the one-node cluster that writes it.
func initializedState(t testing.TB) (*state.State, localCluster) {
	t.Helper()
	key, err := hsm.GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hsm.ParseSoftKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := h.Seal(context.Background(), bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	st := state.New(h)
	c := localCluster{st}
	if err := c.Apply(context.Background(), &state.Entry{Op: state.OpInit, Init: &state.InitArgs{ClusterID: "c", SealedRootKey: sealed}}); err != nil {
		t.Fatal(err)
	}
	return st, c
}
