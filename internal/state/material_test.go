package state

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/keep-kms/keep/internal/crypto"
)

// versionOf returns version n of key name of the default enclave of s as
// the state holds it.
func versionOf(t *testing.T, s *State, name string, n uint32) *version {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, err := s.keyRing(DefaultEnclave, name)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := k.version(n)
	if !ok {
		t.Fatalf("no version %d of key %s", n, name)
	}
	return v
}

// TestFirstUse checks that a version applied from the log, or restored
// from a snapshot or a backup, holds its material sealed until it is first
// used: listing it unseals nothing, and its first use unseals the material
// it was created with, once, and keeps it; the snapshot of the state is the
// same before and after.
func TestFirstUse(t *testing.T) {
	h := testHSM(t)
	src, _ := populated(t, h)
	restored := func(kind envelopeKind) func(t *testing.T) (*State, *State) {
		return func(t *testing.T) (*State, *State) {
			s := New(h)
			if err := s.restore(bytes.NewReader(snapshotOf(t, src, kind)), kind, false); err != nil {
				t.Fatal(err)
			}
			return s, src
		}
	}
	tests := []struct {
		name  string
		state func(t *testing.T) (s, src *State) // src: whose material s has
	}{
		{"applied", func(t *testing.T) (*State, *State) { s, _ := populated(t, h); return s, s }},
		{"restored snapshot", restored(snapshotEnvelope)},
		{"restored backup", restored(backupEnvelope)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, src := tt.state(t)
			before := snapshotOf(t, s, snapshotEnvelope)
			if _, _, err := s.Keys(DefaultEnclave, "", "", 10); err != nil {
				t.Fatal(err)
			}
			if _, err := s.KeyVersions(DefaultEnclave, "k"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.KeyInfo(DefaultEnclave, "k"); err != nil {
				t.Fatal(err)
			}
			for n, typ := range map[uint32]crypto.KeyType{1: crypto.AES256, 2: crypto.ChaCha20} {
				v := versionOf(t, s, "k", n)
				if v.use.Load() != nil {
					t.Fatalf("version %d is unsealed before its first use", n)
				}
				kv, err := s.Key(DefaultEnclave, "k", n)
				if err != nil {
					t.Fatalf("version %d: %v", n, err)
				}
				if kv.Type() != typ || kv.Key.Type() != typ || kv.Usage == nil {
					t.Fatalf("version %d: type %s, key of type %s, counter %p", n, kv.Type(), kv.Key.Type(), kv.Usage)
				}
				want, err := src.Key(DefaultEnclave, "k", n)
				if err != nil {
					t.Fatal(err)
				}
				ciphertext, err := want.Key.Encrypt(n, []byte("hello"), nil)
				if err != nil {
					t.Fatal(err)
				}
				if plain, err := kv.Key.Decrypt(ciphertext, nil); err != nil || string(plain) != "hello" {
					t.Fatalf("version %d does not decrypt what its material encrypted: %q, %v", n, plain, err)
				}
				again, err := s.Key(DefaultEnclave, "k", n)
				if err != nil || again.Key != kv.Key || again.Usage != kv.Usage {
					t.Fatalf("version %d: a second use got another key or counter (%v)", n, err)
				}
			}
			if oldest, err := s.OldestKey(DefaultEnclave, "k"); err != nil || oldest.Version != 1 || oldest.Key == (crypto.Key{}) {
				t.Fatalf("OldestKey = %+v, %v", oldest, err)
			}
			if after := snapshotOf(t, s, snapshotEnvelope); !bytes.Equal(after, before) {
				t.Error("using the keys changed the snapshot")
			}
		})
	}
}

// TestFirstUseConcurrent uses a restored version from many goroutines at
// once: it is unsealed once, and every one of them gets the same key and
// counter (run it with -race).
func TestFirstUseConcurrent(t *testing.T) {
	h := testHSM(t)
	src, _ := populated(t, h)
	snap := snapshotOf(t, src, snapshotEnvelope)
	// Rounds, so that goroutines meet in a first use, on a machine of two
	// cores too.
	for round := range 50 {
		s := New(h)
		if err := s.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatal(err)
		}
		const n = 16
		got := make([]KeyVersion, 2*n)
		errs := make([]error, 2*n)
		var ready, wg sync.WaitGroup
		ready.Add(len(got))
		start := make(chan struct{})
		for i := range got {
			wg.Go(func() {
				ready.Done()
				<-start
				got[i], errs[i] = s.Key(DefaultEnclave, "k", uint32(1+i%2))
			})
		}
		ready.Wait()
		close(start)
		wg.Wait()
		for i := range got {
			first := got[i%2]
			if errs[i] != nil || got[i].Key == (crypto.Key{}) || got[i].Key != first.Key || got[i].Usage != first.Usage {
				t.Fatalf("round %d, use %d of version %d: %v; not the key and counter of the others", round, i, 1+i%2, errs[i])
			}
		}
		if got[0].Key == got[1].Key {
			t.Fatal("two versions share a key")
		}
	}
}

// TestFirstUseFails damages the sealed material of a restored version, as
// only a holder of the root key could in an authentic snapshot: its first
// use fails with ErrUnseal, names the version and not the material, and
// leaves nothing behind, so that a use once the material is whole again
// unseals it; the counter a snapshot install carried over survives.
func TestFirstUseFails(t *testing.T) {
	h := testHSM(t)
	src, _ := populated(t, h)
	tests := []struct {
		name    string
		counted bool // the version has a counter but no key (see keepCounters)
	}{
		{"never used", false},
		{"counter carried over", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(h)
			if err := s.Restore(bytes.NewReader(snapshotOf(t, src, snapshotEnvelope))); err != nil {
				t.Fatal(err)
			}
			v := versionOf(t, s, "k", 1)
			var carried *inUse
			if tt.counted {
				used, _ := src.Key(DefaultEnclave, "k", 1)
				carried = &inUse{counter: used.Usage}
				v.use.Store(carried)
			}
			whole := v.sealed
			v.sealed[len(v.sealed)-1] ^= 1
			for range 2 {
				_, err := s.Key(DefaultEnclave, "k", 1)
				if !errors.Is(err, ErrUnseal) || errors.Is(err, crypto.ErrDecrypt) {
					t.Fatalf("got %v, want ErrUnseal and not crypto.ErrDecrypt", err)
				}
				if msg := err.Error(); !strings.Contains(msg, `version 1 of key "k" of enclave "default"`) || strings.Contains(msg, string(v.sealed[:])) {
					t.Fatalf("error %q: want the version named, and no material", msg)
				}
				if v.use.Load() != carried {
					t.Fatal("a failed first use left something behind")
				}
			}
			if _, err := s.Key(DefaultEnclave, "k", 2); err != nil {
				t.Fatalf("another version of the key: %v", err)
			}
			v.sealed = whole
			kv, err := s.Key(DefaultEnclave, "k", 1)
			if err != nil || kv.Key == (crypto.Key{}) {
				t.Fatalf("once whole again: %v", err)
			}
			if tt.counted && kv.Usage != carried.counter {
				t.Error("the first use replaced the counter carried over")
			}
		})
	}
}

// TestRestoreKeepsFirstUse restores, over a state whose versions were
// used, a snapshot of itself, and one of another cluster that has the
// same key and version numbers: the versions sealed alike under the same
// root key stay unsealed, with their key; the others unseal their own
// material on first use, and every version keeps its counter.
func TestRestoreKeepsFirstUse(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	used, err := s.Key(DefaultEnclave, "k", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(bytes.NewReader(snapshotOf(t, s, snapshotEnvelope))); err != nil {
		t.Fatal(err)
	}
	if u := versionOf(t, s, "k", 2).use.Load(); u != nil {
		t.Fatal("restoring made a version never used unsealed")
	}
	if kv, err := s.Key(DefaultEnclave, "k", 1); err != nil || kv.Key != used.Key || kv.Usage != used.Usage {
		t.Fatalf("the same snapshot: got another key or counter (%v)", err)
	}

	other, _ := populated(t, h) // another cluster, another root key
	want, err := other.Key(DefaultEnclave, "k", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(bytes.NewReader(snapshotOf(t, other, snapshotEnvelope))); err != nil {
		t.Fatal(err)
	}
	kv, err := s.Key(DefaultEnclave, "k", 1)
	if err != nil || !bytes.Equal(kv.Key.Material(), want.Key.Material()) || kv.Usage != used.Usage {
		t.Fatalf("another cluster's snapshot: %v; want its material and the counter kept", err)
	}
}

// TestNewVersion checks what a version applied or restored is checked for,
// now that its material is not unsealed then, and which versions are still
// unsealed at once: legacy material, sealed again, and KES keys.
func TestNewVersion(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	material, err := crypto.GenerateKey(crypto.AES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.SealKey(DefaultEnclave, "n", 1, material)
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := s.rootKey.Encrypt(0, material.Material(), legacyKeyAAD(DefaultEnclave, "n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		typ    crypto.KeyType
		sealed []byte
		kes    *KESArgs
		legacy bool
		err    error // nil: the version is made
		eager  bool  // unsealed at once
	}{
		{name: "sealed", typ: crypto.AES256, sealed: sealed},
		{name: "unknown type", typ: "DES", sealed: sealed, err: crypto.ErrInvalidKeyType},
		{name: "no type", sealed: sealed, err: ErrInvalidArgument},
		{name: "short", typ: crypto.AES256, sealed: sealed[:len(sealed)-1], err: ErrInvalidArgument},
		{name: "long", typ: crypto.AES256, sealed: append(bytes.Clone(sealed), 0), err: ErrInvalidArgument},
		{name: "legacy", typ: crypto.AES256, sealed: legacy, legacy: true, eager: true},
		{name: "legacy that does not unseal", typ: crypto.AES256, sealed: sealed, legacy: true, err: crypto.ErrDecrypt},
		{name: "KES", typ: crypto.AES256, sealed: sealed, kes: &KESArgs{Format: "json"}, eager: true},
		{name: "KES that does not unseal", typ: crypto.AES256, sealed: legacy, kes: &KESArgs{Format: "json"}, err: crypto.ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := s.newVersion(DefaultEnclave, "n", 1, tt.typ, tt.sealed, tt.kes, tt.legacy)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || v != nil {
					t.Fatalf("got %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u := v.use.Load(); (u != nil) != tt.eager || (u != nil && !bytes.Equal(u.key.Material(), material.Material())) {
				t.Fatalf("unsealed at once: %v, want %v, with the material it was sealed with", u != nil, tt.eager)
			}
			if (v.kes != nil) != (tt.kes != nil) || v.Type() != tt.typ {
				t.Fatalf("KES key %v, type %s", v.kes != nil, v.Type())
			}
			// What a snapshot holds unseals under keyAAD, legacy or not.
			got, err := s.unsealKey(DefaultEnclave, "n", 1, tt.typ, v.sealed[:])
			if err != nil || !bytes.Equal(got.Material(), material.Material()) {
				t.Fatalf("the sealed material kept: %v", err)
			}
		})
	}
}
