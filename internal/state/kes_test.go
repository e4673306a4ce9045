package state_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/kesformat"
	"github.com/keep-kms/keep/internal/state"
)

// kesEntry is the entry that imports a KES key k as version 1 of key name,
// with KES's HMAC key hmacKey (nil for none), sealed as the service does.
func kesEntry(t testing.TB, s *state.State, name string, k crypto.Key, hmacKey []byte, implicit bool) *state.Entry {
	t.Helper()
	sealed, err := s.SealKey(state.DefaultEnclave, name, 1, k)
	if err != nil {
		t.Fatal(err)
	}
	args := &state.KeyArgs{Type: k.Type(), Version: 1, Imported: true, Sealed: sealed, KES: &state.KESArgs{Format: "protobuf-base64", Implicit: implicit}}
	if hmacKey != nil {
		if args.KES.SealedHMAC, err = s.SealKESHMAC(state.DefaultEnclave, name, 1, k.Type(), hmacKey); err != nil {
			t.Fatal(err)
		}
	}
	return &state.Entry{Op: state.OpCreateKey, Enclave: state.DefaultEnclave, Name: name, Key: args}
}

// TestKESEntries applies entries that import KES keys, and refuses those
// no import makes: a KES key as a later version, not marked imported, an
// implicit algorithm other than AES256, or an HMAC key sealed for another
// key or version.
func TestKESEntries(t *testing.T) {
	s := newState(t)
	aes, _ := crypto.GenerateKey(crypto.AES256, nil)
	chacha, _ := crypto.GenerateKey(crypto.ChaCha20, nil)
	hmacKey := bytes.Repeat([]byte{9}, kesformat.KeySize)

	mustApply(t, s, kesEntry(t, s, "good", aes, hmacKey, false))
	kv, err := s.Key(state.DefaultEnclave, "good", 0)
	if err != nil || kv.KES == nil {
		t.Fatalf("imported KES key: %+v, %v", kv, err)
	}
	mac, err := kv.KES.HMAC([]byte("m"))
	want, _ := kesformat.HMAC(hmacKey, []byte("m"))
	if err != nil || !bytes.Equal(mac, want) {
		t.Errorf("HMAC of the imported key: %x, %v; want %x", mac, err, want)
	}
	mustApply(t, s, kesEntry(t, s, "nohmac", aes, nil, true))
	if kv, _ := s.Key(state.DefaultEnclave, "nohmac", 0); kv.KES == nil {
		t.Error("the key without HMAC key is no KES key")
	} else if _, err := kv.KES.HMAC([]byte("m")); !errors.Is(err, kesformat.ErrNoHMACKey) {
		t.Errorf("HMAC of a key without HMAC key: %v", err)
	}

	tests := []struct {
		name string
		edit func(e *state.Entry)
	}{
		{"added as a version", func(e *state.Entry) { e.Key.AddVersion = true }},
		{"legacy entry", func(e *state.Entry) { e.Key.Version = 0 }},
		{"not imported", func(e *state.Entry) { e.Key.Imported = false }},
		{"implicit ChaCha20", func(e *state.Entry) {
			*e = *kesEntry(t, s, e.Name, chacha, nil, true)
		}},
		{"HMAC key of another key", func(e *state.Entry) {
			e.Key.KES.SealedHMAC = kesEntry(t, s, "other", aes, hmacKey, false).Key.KES.SealedHMAC
		}},
		{"HMAC key sealed as material", func(e *state.Entry) { e.Key.KES.SealedHMAC = e.Key.Sealed }},
	}
	for _, tt := range tests {
		e := kesEntry(t, s, "bad", aes, hmacKey, false)
		tt.edit(e)
		if err := apply(s, e); err == nil {
			t.Errorf("%s: applied", tt.name)
		}
		if _, err := s.Key(state.DefaultEnclave, "bad", 0); !errors.Is(err, state.ErrKeyNotFound) {
			t.Errorf("%s: key created: %v", tt.name, err)
		}
	}

	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if kv, err := s.Key(state.DefaultEnclave, "good", 1); err != nil || kv.KES == nil {
		t.Fatalf("restored KES key: %+v, %v", kv, err)
	} else if mac, err := kv.KES.HMAC([]byte("m")); err != nil || !bytes.Equal(mac, want) {
		t.Errorf("HMAC of the restored key: %x, %v", mac, err)
	}
}
