package state

import (
	"errors"
	"testing"

	"github.com/keep-kms/keep/internal/crypto"
)

func TestCheckEntry(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	other, _ := populated(t, h) // another cluster: another root key
	entry := func(s *State) []byte {
		data, err := s.EncodeEntry(&Entry{Op: OpCreateKey, Enclave: DefaultEnclave, Name: "new", Key: &KeyArgs{Type: crypto.AES256}})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	own := entry(s)
	tampered := append([]byte(nil), own...)
	tampered[10] ^= 1
	for _, tc := range []struct {
		name  string
		state *State
		data  []byte
		want  error // nil: accepted
	}{
		{"own entry", s, own, nil},
		{"init entry", New(h), initEntry(t, h), nil},
		{"another cluster's entry", s, entry(other), ErrNotAuthentic},
		{"before the init entry", New(h), own, ErrNotAuthentic},
		{"changed", s, tampered, ErrNotAuthentic},
		{"no MAC", s, []byte(`{"op":"key.create","name":"x"}`), ErrNotAuthentic},
		{"not JSON", s, []byte("garbage"), ErrNotAuthentic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.state.CheckEntry(tc.data)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("CheckEntry = %v, want %v", err, tc.want)
			}
			// What CheckEntry accepts, Apply accepts.
			if tc.want == nil {
				if err := tc.state.Apply(tc.data); errors.Is(err, ErrNotAuthentic) {
					t.Fatalf("accepted, but Apply refuses it: %v", err)
				}
			}
		})
	}
}

// BenchmarkCheckEntry measures the leader's check of an entry against the
// encoding of one, which every write already pays.
func BenchmarkCheckEntry(b *testing.B) {
	s, _ := populated(b, testHSM(b))
	e := &Entry{Op: OpCreateKey, Enclave: DefaultEnclave, Name: "new", Key: &KeyArgs{Type: crypto.AES256, Sealed: make([]byte, 60)}}
	data, err := s.EncodeEntry(e)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.EncodeEntry(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if err := s.CheckEntry(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
