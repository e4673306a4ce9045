package state_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// softHSM returns a new soft HSM called name.
func softHSM(t *testing.T, name string) *hsm.Soft {
	t.Helper()
	key, err := hsm.GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hsm.ParseSoftKey(key)
	if err != nil {
		t.Fatal(err)
	}
	h.SetName(name)
	return h
}

// sealRootWith seals a root key of 7s with every HSM of k: the root key,
// its seals and their encoding.
func sealRootWith(t *testing.T, k *hsm.Keyring) (root []byte, seals []hsm.Seal, sealed []byte) {
	t.Helper()
	root = bytes.Repeat([]byte{7}, 32)
	seals, err := k.Seal(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if sealed, err = hsm.EncodeSeals(seals, root); err != nil {
		t.Fatal(err)
	}
	return root, seals, sealed
}

// TestHSMSeals adds and removes HSMs: the seals, the identities they
// publish, OnSeals, snapshots and the refusals.
func TestHSMSeals(t *testing.T) {
	ctx := context.Background()
	a, b := softHSM(t, "a"), softHSM(t, "b")
	k := hsm.NewKeyring(a)
	root, seals, sealed := sealRootWith(t, k)
	s := state.New(k)
	var heard [][]byte
	s.OnSeals(func(sealed, r []byte) {
		if !bytes.Equal(r, root) {
			t.Errorf("OnSeals got another root key")
		}
		heard = append(heard, bytes.Clone(sealed))
	})
	mustApply(t, s, &state.Entry{Op: state.OpInit, Init: &state.InitArgs{ClusterID: "c", SealedRootKey: sealed}})
	if got := hsm.Names(s.Seals()); !slices.Equal(got, []string{"a"}) || len(heard) != 1 {
		t.Fatalf("after init: seals %v, OnSeals %d times", got, len(heard))
	}
	if !s.IsHSMRoot(seals[0].Root) || s.IsHSMRoot("") {
		t.Fatal("the first HSM's identities are not published")
	}
	if !s.IsRootKey(root) || s.IsRootKey(bytes.Repeat([]byte{8}, 32)) {
		t.Fatal("IsRootKey does not tell the root key")
	}

	sealB, err := hsm.NewSeal(ctx, b, root)
	if err != nil {
		t.Fatal(err)
	}
	add := &state.Entry{Op: state.OpHSM, HSM: &state.HSMArgs{Add: []hsm.Seal{sealB}}}
	mustApply(t, s, add)
	if err := apply(s, add); !errors.Is(err, state.ErrHSMExists) {
		t.Fatalf("adding b again: %v, want ErrHSMExists", err)
	}
	mustApply(t, s, &state.Entry{Op: state.OpHSM, HSM: &state.HSMArgs{Add: []hsm.Seal{sealB}, Overwrite: true}})
	if got := hsm.Names(s.Seals()); !slices.Equal(got, []string{"a", "b"}) || !s.IsHSMRoot(sealB.Root) {
		t.Fatalf("after adding b: %v", got)
	}

	// A node with only b opens what OnSeals stored, and a snapshot.
	onlyB := hsm.NewKeyring(b)
	if h, err := onlyB.Open(ctx, heard[len(heard)-1]); err != nil || h != b {
		t.Fatalf("a node with b only: %v, %v", h, err)
	}
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	restored := state.New(hsm.NewKeyring(b))
	if err := restored.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatalf("a node with b only restores the snapshot: %v", err)
	}
	if got := hsm.Names(restored.Seals()); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("restored seals: %v", got)
	}

	for _, tt := range []struct {
		name string
		args *state.HSMArgs
		want error
	}{
		{"remove unknown", &state.HSMArgs{Remove: "z"}, state.ErrHSMNotFound},
		{"neither", &state.HSMArgs{}, state.ErrInvalidArgument},
		{"both", &state.HSMArgs{Add: []hsm.Seal{sealB}, Remove: "a"}, state.ErrInvalidArgument},
		{"bad seal", &state.HSMArgs{Add: []hsm.Seal{{HSM: "c"}}}, state.ErrInvalidArgument},
	} {
		if err := apply(s, &state.Entry{Op: state.OpHSM, HSM: tt.args}); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	mustApply(t, s, &state.Entry{Op: state.OpHSM, HSM: &state.HSMArgs{Remove: "a"}})
	if s.IsHSMRoot(seals[0].Root) || !slices.Equal(hsm.Names(s.Seals()), []string{"b"}) {
		t.Fatalf("after removing a: %v", hsm.Names(s.Seals()))
	}
	if err := apply(s, &state.Entry{Op: state.OpHSM, HSM: &state.HSMArgs{Remove: "b"}}); !errors.Is(err, state.ErrHSMInUse) {
		t.Fatalf("removing the last HSM: %v, want ErrHSMInUse", err)
	}
	if _, err := hsm.NewKeyring(a).Open(ctx, heard[len(heard)-1]); !errors.Is(err, hsm.ErrNoSeal) {
		t.Fatalf("a node with a only after a was removed: %v, want ErrNoSeal", err)
	}
}
