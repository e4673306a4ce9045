package state_test

import (
	"bytes"
	"testing"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// TestSnapshotSealsTampered flips every bit of the seals in a snapshot's
// envelope: each snapshot must be refused, whether the flip breaks the
// list or leaves one that reads the same (JSON names match in any case).
func TestSnapshotSealsTampered(t *testing.T) {
	k := hsm.NewKeyring(softHSM(t, "a"), softHSM(t, "b"))
	_, _, sealed := sealRootWith(t, k)
	s := state.New(k)
	mustApply(t, s, &state.Entry{Op: state.OpInit, Init: &state.InitArgs{ClusterID: "c", SealedRootKey: sealed}})
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	data := snap.Bytes()
	const start = 8 + 1 + 2 // magic, format, length
	for off := start; off < start+len(sealed); off++ {
		for bit := range 8 {
			bad := bytes.Clone(data)
			bad[off] ^= 1 << bit
			if err := state.New(k).Restore(bytes.NewReader(bad)); err == nil {
				t.Fatalf("a snapshot with bit %d of byte %d (%q) flipped is accepted", bit, off, data[off])
			}
		}
	}
}
