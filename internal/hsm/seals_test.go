package hsm

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/crypto"
)

func namedSoft(t *testing.T, name string) *Soft {
	t.Helper()
	key, err := GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSoftKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if name != "" {
		s.SetName(name)
	}
	return s
}

func TestDecodeSeals(t *testing.T) {
	valid := []Seal{{HSM: "a", Sealed: []byte{1}}, {HSM: "b", Sealed: []byte{2}, Node: "h1:x", Root: "h1:y"}}
	enc, err := EncodeSeals(valid, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSeals(enc)
	if err != nil || len(got) != 2 || got[1].Node != "h1:x" || !bytes.Equal(got[0].Sealed, []byte{1}) {
		t.Fatalf("DecodeSeals(EncodeSeals) = %+v, %v", got, err)
	}
	legacy, err := DecodeSeals([]byte("a legacy ciphertext"))
	if err != nil || len(legacy) != 1 || legacy[0].HSM != LegacyName {
		t.Fatalf("legacy sealed root key: %+v, %v", legacy, err)
	}
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"no seals", []byte(sealsMagic + `{"seals":[]}`)},
		{"not JSON", []byte(sealsMagic + "{")},
		{"a bare list", []byte(sealsMagic + `[{"hsm":"a","sealed":"AQ=="}]`)},
		{"two of one HSM", []byte(sealsMagic + `{"seals":[{"hsm":"a","sealed":"AQ=="},{"hsm":"a","sealed":"Ag=="}]}`)},
		{"empty seal", []byte(sealsMagic + `{"seals":[{"hsm":"a","sealed":""}]}`)},
		{"bad name", []byte(sealsMagic + `{"seals":[{"hsm":"a b","sealed":"AQ=="}]}`)},
		{"no name", []byte(sealsMagic + `{"seals":[{"sealed":"AQ=="}]}`)},
		{"too many", []byte(sealsMagic + `{"seals":[` + strings.Repeat(`{"hsm":"a","sealed":"AQ=="},`, maxSeals) + `{"hsm":"z","sealed":"AQ=="}]}`)},
		{"huge legacy", bytes.Repeat([]byte{1}, maxSealedSize+1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeSeals(tt.data); !errors.Is(err, ErrSeals) {
				t.Errorf("DecodeSeals = %v, want ErrSeals", err)
			}
		})
	}
}

func TestKeyring(t *testing.T) {
	ctx := context.Background()
	a, b, c := namedSoft(t, "a"), namedSoft(t, "b"), namedSoft(t, "c")
	root := bytes.Repeat([]byte{7}, 32)

	creator := NewKeyring(a, b)
	seals, err := creator.Seal(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if len(seals) != 2 || seals[0].Node == "" || seals[0].Root == "" || seals[0].Node == seals[1].Node {
		t.Fatalf("seals = %+v, want one per HSM with its own identities", seals)
	}
	sealed, err := EncodeSeals(seals, root)
	if err != nil {
		t.Fatal(err)
	}

	// A node with only the second HSM opens it, with that HSM.
	onlyB := NewKeyring(c, b)
	h, err := onlyB.Open(ctx, sealed)
	if err != nil || h != b {
		t.Fatalf("Open with [c b] = %v, %v; want b", h, err)
	}
	// And a node with neither refuses, naming both sides, as ErrDecrypt.
	_, err = NewKeyring(c).Open(ctx, sealed)
	if !errors.Is(err, ErrNoSeal) || !errors.Is(err, crypto.ErrDecrypt) || !strings.Contains(err.Error(), "a, b") || !strings.Contains(err.Error(), "c") {
		t.Fatalf("Open with [c] = %v", err)
	}

	// Unseal falls back on the known root key only for a decodable
	// sealed root key that none of its HSMs opens.
	onlyC := NewKeyring(c)
	if _, err := onlyC.Unseal(ctx, sealed); !errors.Is(err, ErrNoSeal) {
		t.Fatalf("Unseal without a root key = %v, want ErrNoSeal", err)
	}
	if onlyC.IsNode(seals[0].Node) {
		t.Fatal("a keyring that opened no seals knows the cluster's nodes")
	}
	onlyC.Adopt(sealed, root)
	if !onlyC.IsNode(seals[0].Node) || !onlyC.IsNode(seals[1].Node) || onlyC.IsNode("") {
		t.Fatal("Adopt did not publish the seals' node identities")
	}
	got, err := onlyC.Unseal(ctx, sealed)
	if err != nil || !bytes.Equal(got, root) {
		t.Fatalf("Unseal with a known root key = %x, %v", got, err)
	}
	if _, err := onlyC.Unseal(ctx, []byte(sealsMagic+"{")); err == nil {
		t.Fatal("Unseal of garbage fell back on the root key")
	}

	// A list changed by someone without the root key is refused, not
	// fallen back on: a seal added, an identity changed.
	other := bytes.Repeat([]byte{9}, 32)
	added, err := EncodeSeals(append(seals[:1:1], Seal{HSM: "evil", Sealed: []byte{1}, Node: "h1:evil"}), other)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(sealed, []byte(seals[1].Node), []byte(seals[0].Node), 1)
	for name, bad := range map[string][]byte{"seal added": added, "node identity changed": edited} {
		if _, err := creator.Open(ctx, bad); !errors.Is(err, ErrSealsNotAuthentic) {
			t.Errorf("Open of a list with a %s: %v, want ErrSealsNotAuthentic", name, err)
		}
	}
	if err := VerifySeals(sealed, root); err != nil {
		t.Errorf("VerifySeals of the genuine list: %v", err)
	}

	// SealRoot seals the known root key with another HSM.
	seal, err := onlyB.SealRoot(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := c.Unseal(ctx, seal.Sealed)
	if err != nil || !bytes.Equal(plain, root) {
		t.Fatalf("SealRoot: %x, %v", plain, err)
	}
	if _, err := NewKeyring(a).SealRoot(ctx, a); err == nil {
		t.Fatal("SealRoot without a root key succeeded")
	}
}
