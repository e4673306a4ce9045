package state_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/state"
)

const dave = "h1:n0p0Fb3lIqOhZ7sV3Dl1Wn0Ci6n3RcK8fTSnoRXl1oU"

// nthID returns a valid identity of its own for each n.
func nthID(n int) string {
	sum := sha256.Sum256([]byte{byte(n), byte(n >> 8), 'x'})
	return "h1:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

func createSA(s *state.State, by, id string) error {
	return apply(s, &state.Entry{Op: state.OpCreateIdentity, Enclave: state.DefaultEnclave, By: by, Name: id, Identity: &state.IdentityArgs{ServiceAccount: true}})
}

// TestServiceAccountForest: entries that would close a cycle are refused
// on apply; overwrites keep the parents' lists in step; deletion walks a
// work list.
func TestServiceAccountForest(t *testing.T) {
	s := newState(t)
	const enc = state.DefaultEnclave
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: enc, Name: alice, Identity: &state.IdentityArgs{Privilege: state.Admin}})
	if err := createSA(s, alice, bob); err != nil {
		t.Fatal(err)
	}
	if err := createSA(s, bob, carol); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ by, id string }{{bob, alice}, {carol, alice}, {carol, bob}, {alice, alice}} {
		if err := createSA(s, tt.by, tt.id); !errors.Is(err, state.ErrInvalidArgument) {
			t.Errorf("%s makes %s its service account: %v", tt.by, tt.id, err)
		}
	}
	// Bob moves under dave, and carol, his service account, with him.
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: enc, Name: dave, Identity: &state.IdentityArgs{Privilege: state.SysAdmin}})
	if err := createSA(s, dave, bob); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Identity(alice); len(a.ServiceAccounts) != 0 {
		t.Errorf("old parent still lists bob: %v", a.ServiceAccounts)
	}
	if p, err := s.Principal(carol); err != nil || p.Privilege != state.SysAdmin {
		t.Errorf("carol after bob moved: %+v, %v", p, err)
	}
	// Carol moves to dave directly: bob no longer lists her.
	if err := createSA(s, dave, carol); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Identity(bob); len(b.ServiceAccounts) != 0 {
		t.Errorf("old parent still lists carol: %v", b.ServiceAccounts)
	}
	// Overwritten as a plain identity: dave no longer lists her.
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: enc, Name: carol, Identity: &state.IdentityArgs{Privilege: state.User}})
	if d, _ := s.Identity(dave); !slices.Equal(d.ServiceAccounts, []string{bob}) {
		t.Errorf("dave lists %v, want bob alone", d.ServiceAccounts)
	}
	for id, want := range map[string]state.Privilege{alice: state.Admin, bob: state.SysAdmin, carol: state.User} {
		if p, err := s.Principal(id); err != nil || p.Privilege != want {
			t.Errorf("Principal(%s) = %+v, %v", id, p, err)
		}
	}
	// Deleting dave deletes bob, but not carol, who left.
	mustApply(t, s, &state.Entry{Op: state.OpDeleteIdentity, Enclave: enc, Name: dave})
	if _, err := s.Identity(bob); !errors.Is(err, state.ErrIdentityNotFound) {
		t.Errorf("bob survived: %v", err)
	}
	if _, err := s.Identity(carol); err != nil {
		t.Errorf("carol was deleted with her former parent: %v", err)
	}
}

// TestServiceAccountDepth: chains stop at MaxServiceAccountDepth; a long
// tree is deleted without recursion.
func TestServiceAccountDepth(t *testing.T) {
	s := newState(t)
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: state.DefaultEnclave, Name: alice, Identity: &state.IdentityArgs{Privilege: state.Admin}})
	parent := alice
	for k := range state.MaxServiceAccountDepth {
		id := nthID(k)
		if err := createSA(s, parent, id); err != nil {
			t.Fatalf("depth %d: %v", k+1, err)
		}
		parent = id
	}
	if err := createSA(s, parent, bob); !errors.Is(err, state.ErrServiceAccountCycle) {
		t.Fatalf("depth %d: %v", state.MaxServiceAccountDepth+1, err)
	}
	if p, err := s.Principal(parent); err != nil || p.Privilege != state.Admin {
		t.Fatalf("deepest: %+v, %v", p, err)
	}
	// A tree of two levels cannot move below the second-deepest.
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: state.DefaultEnclave, Name: bob, Identity: &state.IdentityArgs{Privilege: state.Admin}})
	if err := createSA(s, bob, carol); err != nil {
		t.Fatal(err)
	}
	if err := createSA(s, nthID(state.MaxServiceAccountDepth-2), bob); !errors.Is(err, state.ErrServiceAccountCycle) {
		t.Fatalf("tree moved too deep: %v", err)
	}
	if err := createSA(s, nthID(state.MaxServiceAccountDepth-3), bob); err != nil {
		t.Fatalf("tree moved to the deepest place it fits: %v", err)
	}
	mustApply(t, s, &state.Entry{Op: state.OpDeleteIdentity, Enclave: state.DefaultEnclave, Name: alice})
	if _, err := s.Identity(parent); !errors.Is(err, state.ErrIdentityNotFound) {
		t.Fatalf("deepest survived: %v", err)
	}
}

// TestRestoreLegacyCycle: a snapshot of the old main holding a cycle of
// service accounts restores, the cycle broken, and every identity answers.
// An invalid snapshot is refused and leaves the state as it was.
func TestRestoreLegacyCycle(t *testing.T) {
	s := newState(t)
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: state.DefaultEnclave, Name: alice, Identity: &state.IdentityArgs{Privilege: state.Admin}})
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: state.DefaultEnclave, Name: bob, Identity: &state.IdentityArgs{Privilege: state.User}})
	var buf bytes.Buffer
	if err := s.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	// The previous version wrote the JSON alone, as format 1: take it out
	// of the envelope.
	var snap map[string]any
	if err := json.Unmarshal(buf.Bytes()[bytes.Index(buf.Bytes(), []byte(`{"format":`)):], &snap); err != nil {
		t.Fatal(err)
	}
	snap["format"] = 1
	t0 := time.Unix(1e9, 0).UTC()
	snap["identities"] = []map[string]any{
		{"ID": alice, "Enclave": "default", "Privilege": 2, "Parent": bob, "ServiceAccounts": []string{bob}, "CreatedAt": t0.Add(time.Second)},
		{"ID": bob, "Enclave": "default", "Privilege": 2, "Parent": alice, "ServiceAccounts": []string{alice}, "CreatedAt": t0},
	}
	legacy, _ := json.Marshal(snap)

	restored := newState(t)
	before := snapshotOf(t, restored)
	if err := restored.RestoreLegacy(bytes.NewReader(legacy)); err == nil {
		t.Fatal("restored a snapshot sealed by another HSM")
	}
	if !bytes.Equal(before, snapshotOf(t, restored)) {
		t.Fatal("a refused restore changed the state")
	}
	if err := s.RestoreLegacy(bytes.NewReader(legacy)); err != nil {
		t.Fatalf("legacy cycle: %v", err)
	}
	a, _ := s.Identity(alice)
	b, _ := s.Identity(bob)
	if a.Parent != "" || b.Parent != alice || !slices.Equal(a.ServiceAccounts, []string{bob}) {
		t.Fatalf("cycle not broken at alice (written last): %+v %+v", a, b)
	}

	snap["identities"] = []map[string]any{{"ID": alice, "Enclave": "default", "Privilege": 1, "Policy": "missing"}}
	bad, _ := json.Marshal(snap)
	before = snapshotOf(t, s)
	if err := s.RestoreLegacy(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), `policy "missing" does not exist`) {
		t.Fatalf("invalid snapshot: %v", err)
	}
	if !bytes.Equal(before, snapshotOf(t, s)) {
		t.Fatal("a refused restore changed the state")
	}
}

func snapshotOf(t *testing.T, s *state.State) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
