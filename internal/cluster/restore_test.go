package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// countingHSM counts the unseals of the HSM it wraps.
type countingHSM struct {
	hsm.HSM
	unseals atomic.Int32
}

func (c *countingHSM) Unseal(ctx context.Context, ciphertext []byte) ([]byte, error) {
	c.unseals.Add(1)
	return c.HSM.Unseal(ctx, ciphertext)
}

// openTestNode opens a node on dir with h, as keep server does.
func openTestNode(t *testing.T, dir string, h hsm.HSM) (*Node, *state.State, error) {
	t.Helper()
	ctx := context.Background()
	kr := hsm.NewKeyring(h)
	nodeKey, err := h.PrivateKey(ctx, []byte("node"))
	if err != nil {
		t.Fatal(err)
	}
	const host = "127.0.0.1:1"
	tr, err := NewTransport(host, nodeKey, "")
	if err != nil {
		t.Fatal(err)
	}
	s := state.New(kr)
	n, err := Open(ctx, Config{Dir: dir, Host: host, Keyring: kr, HSM: h, State: s, Transport: tr})
	if err == nil {
		t.Cleanup(func() { n.Close() })
	}
	return n, s, err
}

// TestOpenRestoresSnapshotOnce restarts a node on a data directory with a
// snapshot: the snapshot is read, verified and decoded once (its root key
// unsealed once, beside the copy in kms.db that finds the node's HSM).
// Before, a check decoded it in full and raft's restore did again, a
// third of the start of a node of a million keys (docs/PERFORMANCE.md).
// A snapshot that fails raft's checksum still refuses the start, naming
// its file.
func TestOpenRestoresSnapshotOnce(t *testing.T) {
	h := &countingHSM{HSM: testHSM(t).HSMs()[0]}
	dir := t.TempDir()
	n, _, err := openTestNode(t, dir, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply(ctx, &state.Entry{Op: state.OpCreateEnclave, Name: "a", Time: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := n.current().raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	h.unseals.Store(0)
	n, s, err := openTestNode(t, dir, h)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.unseals.Load(); got != 2 {
		t.Errorf("the start unsealed the root key %d times, want 2: kms.db's copy, and the snapshot's once", got)
	}
	if s.Fresh() {
		t.Error("the restarted node's state lacks the snapshot's enclave")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	paths, err := filepath.Glob(filepath.Join(dir, snapshotDir, "*", "state.bin"))
	if err != nil || len(paths) != 1 {
		t.Fatalf("snapshots: %v %v", paths, err)
	}
	data, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(paths[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = openTestNode(t, dir, h)
	if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), paths[0]) {
		t.Errorf("start on a snapshot with a wrong checksum: %v, want %v naming %s", err, ErrTampered, paths[0])
	}
}
