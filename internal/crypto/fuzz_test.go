package crypto

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// Fuzz keys have fixed material so that the committed seeds in
// testdata/fuzz include ciphertexts that really decrypt.
const (
	fuzzFillAES256   = 0xA1
	fuzzFillChaCha20 = 0xC2
)

func FuzzDecrypt(f *testing.F) {
	keys := []Key{testKey(f, AES256, fuzzFillAES256), testKey(f, ChaCha20, fuzzFillChaCha20)}
	for _, k := range keys {
		c, err := k.Encrypt(3, []byte("seed plaintext"), []byte("seed ad"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c, []byte("seed ad"))
	}
	f.Fuzz(func(t *testing.T, ciphertext, ad []byte) {
		for _, k := range keys {
			plaintext, err := k.Decrypt(ciphertext, ad)
			if err != nil {
				if err != ErrDecrypt || plaintext != nil {
					t.Fatalf("%s: Decrypt = %q, %v; want nil, ErrDecrypt", k.Type(), plaintext, err)
				}
				continue
			}
			// Only a real ciphertext of k authenticates, so its header must
			// be well-formed and its plaintext must survive a round trip.
			version, err := CiphertextVersion(ciphertext)
			if err != nil {
				t.Fatalf("%s: decrypted, but CiphertextVersion: %v", k.Type(), err)
			}
			if len(plaintext) != len(ciphertext)-minSize {
				t.Fatalf("%s: %d byte plaintext from %d byte ciphertext", k.Type(), len(plaintext), len(ciphertext))
			}
			again, err := k.Encrypt(version, plaintext, ad)
			if err != nil {
				t.Fatal(err)
			}
			got, err := k.Decrypt(again, ad)
			if err != nil || !bytes.Equal(got, plaintext) {
				t.Fatalf("%s: round trip of decrypted plaintext failed: %v", k.Type(), err)
			}
		}
	})
}

func FuzzCiphertextVersion(f *testing.F) {
	k := testKey(f, ChaCha20, fuzzFillChaCha20)
	c, err := k.Encrypt(42, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c)
	f.Fuzz(func(t *testing.T, ciphertext []byte) {
		version, err := CiphertextVersion(ciphertext)
		if err != nil {
			if err != ErrDecrypt || version != 0 {
				t.Fatalf("CiphertextVersion = %d, %v; want 0, ErrDecrypt", version, err)
			}
			return
		}
		if len(ciphertext) < minSize || ciphertext[0] != formatV1 {
			t.Fatalf("accepted a malformed header % x", ciphertext[:min(len(ciphertext), headerSize)])
		}
		if want := binary.BigEndian.Uint32(ciphertext[2:headerSize]); version != want {
			t.Fatalf("version %d, header says %d", version, want)
		}
	})
}
