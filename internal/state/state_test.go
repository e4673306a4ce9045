package state_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

const (
	alice = "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0"
	bob   = "h1:ZG1r5J2fAEj5T2d0nso1FW7tT3p74Y5PxKlL_UTjALA"
	carol = "h1:8dWUSbcnFl3nMr8oMzgSK5liimFZGP7cZ9h4__z0fac"
)

// newState returns an initialized state with a fresh soft HSM.
func newState(t testing.TB) *state.State {
	t.Helper()
	s, _ := newStateHSM(t)
	return s
}

// newStateHSM returns an initialized state and its fresh soft HSM.
func newStateHSM(t testing.TB) (*state.State, hsm.HSM) {
	t.Helper()
	key, err := hsm.GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hsm.ParseSoftKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s := state.New(h)
	mustApply(t, s, &state.Entry{Op: state.OpInit, Init: &state.InitArgs{ClusterID: "c1", SealedRootKey: sealRoot(t, h, 7)}})
	return s, h
}

// sealRoot seals a root key of 32 bytes b with h.
func sealRoot(t testing.TB, h hsm.HSM, b byte) []byte {
	t.Helper()
	sealed, err := h.Seal(context.Background(), bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

// apply encodes e as the proposing node does (authenticated) and applies it.
func apply(s *state.State, e *state.Entry) error {
	data, err := s.EncodeEntry(e)
	if err != nil {
		return err
	}
	return s.Apply(data)
}

func mustApply(t testing.TB, s *state.State, e *state.Entry) {
	t.Helper()
	if err := apply(s, e); err != nil {
		t.Fatalf("apply %s %q: %v", e.Op, e.Name, err)
	}
}

// keyEntry seals fresh material for a key entry, as the service does.
func keyEntry(t testing.TB, s *state.State, enclave, name string, addVersion bool) *state.Entry {
	t.Helper()
	k, err := crypto.GenerateKey(crypto.AES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := s.NextVersion(enclave, name)
	sealed, err := s.SealKey(enclave, name, v, k)
	if err != nil {
		t.Fatal(err)
	}
	return &state.Entry{Op: state.OpCreateKey, Enclave: enclave, Name: name, Key: &state.KeyArgs{Type: crypto.AES256, Version: v, AddVersion: addVersion, Sealed: sealed}}
}

func TestApplyErrors(t *testing.T) {
	s, h := newStateHSM(t)
	mustApply(t, s, &state.Entry{Op: state.OpCreateEnclave, Name: "a"})
	mustApply(t, s, keyEntry(t, s, "a", "k", false))
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: "a", Name: alice, Identity: &state.IdentityArgs{Privilege: state.User}})

	tests := []struct {
		name  string
		entry *state.Entry
		want  error
	}{
		{"init twice", &state.Entry{Op: state.OpInit, Init: &state.InitArgs{ClusterID: "c2", SealedRootKey: sealRoot(t, h, 8)}}, state.ErrAlreadyInitialized},
		{"enclave exists", &state.Entry{Op: state.OpCreateEnclave, Name: "a"}, state.ErrEnclaveExists},
		{"default enclave exists", &state.Entry{Op: state.OpCreateEnclave, Name: state.DefaultEnclave}, state.ErrEnclaveExists},
		{"bad enclave name", &state.Entry{Op: state.OpCreateEnclave, Name: "a/b"}, state.ErrInvalidArgument},
		{"empty enclave name", &state.Entry{Op: state.OpCreateEnclave}, state.ErrInvalidArgument},
		{"delete missing enclave", &state.Entry{Op: state.OpDeleteEnclave, Name: "nope"}, state.ErrEnclaveNotFound},
		{"key exists", keyEntry(t, s, "a", "k", false), state.ErrKeyExists},
		{"key in missing enclave", &state.Entry{Op: state.OpCreateKey, Enclave: "nope", Name: "k", Key: &state.KeyArgs{}}, state.ErrEnclaveNotFound},
		{"add version to missing key", keyEntry(t, s, "a", "other", true), state.ErrKeyNotFound},
		{"delete missing key", &state.Entry{Op: state.OpDeleteKey, Enclave: "a", Name: "nope"}, state.ErrKeyNotFound},
		{"delete missing version", &state.Entry{Op: state.OpDeleteKey, Enclave: "a", Name: "k", DeleteKey: &state.DeleteKeyArgs{Version: 9}}, state.ErrKeyNotFound},
		{"delete version and all", &state.Entry{Op: state.OpDeleteKey, Enclave: "a", Name: "k", DeleteKey: &state.DeleteKeyArgs{Version: 1, All: true}}, state.ErrInvalidArgument},
		{"assign missing policy", &state.Entry{Op: state.OpAssignPolicy, Enclave: "a", Name: alice, Assign: "p"}, state.ErrPolicyNotFound},
		{"delete missing policy", &state.Entry{Op: state.OpDeletePolicy, Enclave: "a", Name: "p"}, state.ErrPolicyNotFound},
		{"identity in two enclaves", &state.Entry{Op: state.OpCreateIdentity, Enclave: state.DefaultEnclave, Name: alice, Identity: &state.IdentityArgs{Privilege: state.User}}, state.ErrIdentityExists},
		{"malformed identity", &state.Entry{Op: state.OpCreateIdentity, Enclave: "a", Name: "alice", Identity: &state.IdentityArgs{Privilege: state.User}}, state.ErrInvalidArgument},
		{"invalid privilege", &state.Entry{Op: state.OpCreateIdentity, Enclave: "a", Name: bob, Identity: &state.IdentityArgs{Privilege: 9}}, state.ErrInvalidArgument},
		{"service account of a stranger", &state.Entry{Op: state.OpCreateIdentity, Enclave: "a", By: carol, Name: bob, Identity: &state.IdentityArgs{ServiceAccount: true}}, state.ErrInvalidArgument},
		{"delete identity of other enclave", &state.Entry{Op: state.OpDeleteIdentity, Enclave: state.DefaultEnclave, Name: alice}, state.ErrIdentityNotFound},
		{"unknown op", &state.Entry{Op: "nope"}, state.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := apply(s, tt.entry); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	if err := s.ApplyLegacy([]byte("{not json")); !errors.Is(err, state.ErrInvalidArgument) {
		t.Fatalf("malformed entry: got %v", err)
	}
}

func TestUninitialized(t *testing.T) {
	s := state.New(nil)
	if err := apply(s, &state.Entry{Op: state.OpCreateEnclave, Name: "a"}); !errors.Is(err, state.ErrNotInitialized) {
		t.Fatalf("got %v", err)
	}
}

func TestKeyVersions(t *testing.T) {
	s := newState(t)
	const enc = state.DefaultEnclave
	mustApply(t, s, keyEntry(t, s, enc, "k", false))
	mustApply(t, s, keyEntry(t, s, enc, "k", true))
	mustApply(t, s, keyEntry(t, s, enc, "k", true))
	latest := func() uint32 {
		kv, err := s.Key(enc, "k", 0)
		if err != nil {
			t.Fatal(err)
		}
		return kv.Version
	}
	if v := latest(); v != 3 {
		t.Fatalf("latest = %d, want 3", v)
	}
	mustApply(t, s, &state.Entry{Op: state.OpDeleteKey, Enclave: enc, Name: "k"}) // deletes v3
	if v := latest(); v != 2 {
		t.Fatalf("after deleting the latest, latest = %d, want 2", v)
	}
	mustApply(t, s, keyEntry(t, s, enc, "k", true))
	if v := latest(); v != 4 {
		t.Fatalf("a deleted version number was reused: latest = %d, want 4", v)
	}
	if _, err := s.Key(enc, "k", 3); !errors.Is(err, state.ErrKeyNotFound) {
		t.Fatalf("deleted version 3: got %v", err)
	}
	versions, err := s.KeyVersions(enc, "k")
	if err != nil || len(versions) != 3 || versions[0].Version != 1 || versions[2].Version != 4 {
		t.Fatalf("versions = %+v, %v", versions, err)
	}
	mustApply(t, s, &state.Entry{Op: state.OpDeleteKey, Enclave: enc, Name: "k", DeleteKey: &state.DeleteKeyArgs{All: true}})
	if _, err := s.Key(enc, "k", 0); !errors.Is(err, state.ErrKeyNotFound) {
		t.Fatalf("deleted key: got %v", err)
	}
}

func TestIdentities(t *testing.T) {
	s := newState(t)
	const enc = state.DefaultEnclave
	mustApply(t, s, &state.Entry{Op: state.OpCreatePolicy, Enclave: enc, Name: "p", Policy: &state.PolicyArgs{Allow: map[string][]string{"KEY:GENERATE": {"*"}}}})
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: enc, Name: alice, Identity: &state.IdentityArgs{Privilege: state.User}})
	mustApply(t, s, &state.Entry{Op: state.OpAssignPolicy, Enclave: enc, Name: alice, Assign: "p"})
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: enc, By: alice, Name: bob, Identity: &state.IdentityArgs{ServiceAccount: true}})
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: enc, By: bob, Name: carol, Identity: &state.IdentityArgs{ServiceAccount: true}})

	a, _ := s.Identity(alice)
	if a.Policy != "p" || len(a.ServiceAccounts) != 1 || a.ServiceAccounts[0] != bob {
		t.Fatalf("alice = %+v", a)
	}
	b, _ := s.Identity(bob)
	if b.Parent != alice || b.Privilege != state.User {
		t.Fatalf("bob = %+v", b)
	}
	if err := apply(s, &state.Entry{Op: state.OpAssignPolicy, Enclave: enc, Name: bob, Assign: "p"}); !errors.Is(err, state.ErrInvalidArgument) {
		t.Fatalf("assigning a policy to a service account: got %v", err)
	}

	mustApply(t, s, &state.Entry{Op: state.OpDeletePolicy, Enclave: enc, Name: "p"})
	if a, _ := s.Identity(alice); a.Policy != "" {
		t.Fatalf("deleted policy still assigned: %+v", a)
	}
	mustApply(t, s, &state.Entry{Op: state.OpDeleteIdentity, Enclave: enc, Name: alice})
	for _, id := range []string{alice, bob, carol} {
		if _, err := s.Identity(id); !errors.Is(err, state.ErrIdentityNotFound) {
			t.Fatalf("%s survived its parent's deletion: %v", id, err)
		}
	}
}

func TestPages(t *testing.T) {
	s := newState(t)
	for _, n := range []string{"b", "a", "c", "ab", "d"} {
		mustApply(t, s, &state.Entry{Op: state.OpCreateEnclave, Name: n})
	}
	tests := []struct {
		prefix, continueAt string
		limit              int
		want               []string
		next               string
	}{
		{"", "", 0, []string{"a", "ab", "b", "c", "d", "default"}, ""},
		{"", "", 2, []string{"a", "ab"}, "b"},
		{"", "b", 2, []string{"b", "c"}, "d"},
		{"a", "", 0, []string{"a", "ab"}, ""},
		{"d", "", 1, []string{"d"}, "default"},
		{"x", "", 0, nil, ""},
	}
	for _, tt := range tests {
		list, next := s.Enclaves(tt.prefix, tt.continueAt, tt.limit)
		var names []string
		for _, e := range list {
			names = append(names, e.Name)
		}
		if !equal(names, tt.want) || next != tt.next {
			t.Errorf("Enclaves(%q, %q, %d) = %v, %q; want %v, %q", tt.prefix, tt.continueAt, tt.limit, names, next, tt.want, tt.next)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSnapshotRestore(t *testing.T) {
	s := newState(t)
	const enc = state.DefaultEnclave
	material := bytes.Repeat([]byte{0xAB}, crypto.KeySize)
	k, _ := crypto.NewKey(crypto.ChaCha20, material)
	sealed, err := s.SealKey(enc, "imported", 1, k)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, &state.Entry{Op: state.OpCreateKey, Enclave: enc, Name: "imported", Time: time.Unix(1e9, 0).UTC(), By: alice, Key: &state.KeyArgs{Type: crypto.ChaCha20, Version: 1, Imported: true, Sealed: sealed}})
	mustApply(t, s, keyEntry(t, s, enc, "rotated", false))
	mustApply(t, s, keyEntry(t, s, enc, "rotated", true))
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: enc, Name: alice, Identity: &state.IdentityArgs{Privilege: state.Admin, Tags: map[string]string{"t": "v"}}})
	ciphertext, _ := k.Encrypt(1, []byte("hello"), nil)

	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(snap.Bytes(), material) {
		t.Fatal("snapshot holds key material in plaintext")
	}

	restored := newState(t) // another HSM key: Restore must fail and keep the state
	if err := restored.Restore(bytes.NewReader(snap.Bytes())); !errors.Is(err, crypto.ErrDecrypt) {
		t.Fatalf("restore with another HSM: got %v", err)
	}
	if restored.ClusterID() != "c1" || !restored.Initialized() {
		// newState initializes with cluster ID c1 as well; it must be intact.
		t.Fatalf("failed restore changed the state")
	}

	var again bytes.Buffer
	if err := s.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap.Bytes(), again.Bytes()) {
		t.Fatal("snapshot of a restored state differs")
	}
	kv, err := s.Key(enc, "imported", 0)
	if err != nil || !kv.Imported || kv.CreatedBy != alice {
		t.Fatalf("imported key after restore: %+v, %v", kv, err)
	}
	if plain, err := kv.Key.Decrypt(ciphertext, nil); err != nil || string(plain) != "hello" {
		t.Fatalf("decrypt after restore: %q, %v", plain, err)
	}
	if kv, _ := s.Key(enc, "rotated", 0); kv.Version != 2 {
		t.Fatalf("rotated key latest = %d", kv.Version)
	}
	if i, _ := s.Identity(alice); i.Tags["t"] != "v" || i.Privilege != state.Admin {
		t.Fatalf("identity after restore: %+v", i)
	}
}
