package hsm

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/crypto"
)

func FuzzParseSoftKey(f *testing.F) {
	f.Add(testSoftKey)
	f.Fuzz(func(t *testing.T, s string) {
		soft, err := ParseSoftKey(s)
		if err != nil {
			if soft != nil {
				t.Fatal("ParseSoftKey returned a Soft with an error")
			}
			if !errors.Is(err, errSoftKey) {
				t.Fatalf("error %q does not wrap errSoftKey", err)
			}
			assertNoKeyInError(t, err)
			return
		}
		// Only the one spelling of a 32-byte key may be accepted, so that
		// two operators with "the same" key always get the same cluster.
		enc := strings.TrimPrefix(s, softKeyPrefix)
		key, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || len(key) != softKeySize {
			t.Fatalf("accepted a key that does not decode to %d bytes", softKeySize)
		}
		if again := softKeyPrefix + base64.StdEncoding.EncodeToString(key); again != s {
			t.Fatal("accepted a key whose re-encoding differs")
		}
		ctx := context.Background()
		sealed, err := soft.Seal(ctx, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if p, err := soft.Unseal(ctx, sealed); err != nil || string(p) != "x" {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

func FuzzUnseal(f *testing.F) {
	ctx := context.Background()
	soft := mustParse(f, testSoftKey)
	sealed, err := soft.Seal(ctx, []byte("root encryption key"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Fuzz(func(t *testing.T, ciphertext []byte) {
		plaintext, err := soft.Unseal(ctx, ciphertext)
		if err != nil {
			if plaintext != nil || !errors.Is(err, crypto.ErrDecrypt) || err.Error() != "invalid ciphertext" {
				t.Fatalf("Unseal = %q, %v; want nil, invalid ciphertext", plaintext, err)
			}
			return
		}
		again, err := soft.Seal(ctx, plaintext)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := soft.Unseal(ctx, again); err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("round trip of unsealed plaintext failed: %v", err)
		}
	})
}

// FuzzDecodeSeals feeds DecodeSeals what kms.db, a peer's join request, a
// snapshot or a backup could hold: it must never panic, and what it
// accepts must encode again to a list it reads the same.
func FuzzDecodeSeals(f *testing.F) {
	f.Add([]byte(sealsMagic + `{"seals":[{"hsm":"a","sealed":"AQ==","node":"h1:x"}],"mac":"AA=="}`))
	f.Add([]byte("legacy"))
	f.Fuzz(func(t *testing.T, data []byte) {
		seals, err := DecodeSeals(data)
		if err != nil {
			if !errors.Is(err, ErrSeals) {
				t.Fatalf("error %q does not wrap ErrSeals", err)
			}
			return
		}
		enc, err := EncodeSeals(seals, []byte("root"))
		if err != nil {
			t.Fatalf("accepted seals do not encode: %v", err)
		}
		again, err := DecodeSeals(enc)
		if err != nil || len(again) != len(seals) {
			t.Fatalf("re-encoded seals read as %d, %v", len(again), err)
		}
	})
}
