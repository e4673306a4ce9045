package crypto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
)

// testKey returns a key of type t whose material is fill repeated, so tests
// and fuzz seeds can rebuild the same key.
func testKey(tb testing.TB, t KeyType, fill byte) Key {
	tb.Helper()
	k, err := NewKey(t, bytes.Repeat([]byte{fill}, KeySize))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 15, 16, 17, 32, 64, 1000, 70000}
	ads := [][]byte{nil, {}, {0}, []byte("enclave/key/1"), bytes.Repeat([]byte{9}, 5000)}
	versions := []uint32{0, 1, 2, 0x01020304, ^uint32(0)}
	for _, typ := range keyTypes {
		k := testKey(t, typ, 0x11)
		for i, size := range sizes {
			plaintext := bytes.Repeat([]byte{byte(size)}, size)
			for j, ad := range ads {
				version := versions[(i+j)%len(versions)]
				ciphertext, err := k.Encrypt(version, plaintext, ad)
				if err != nil {
					t.Fatalf("%s: Encrypt(%d bytes, ad %d): %v", typ, size, j, err)
				}
				if want := minSize + size; len(ciphertext) != want {
					t.Fatalf("%s: ciphertext is %d bytes, want %d", typ, len(ciphertext), want)
				}
				if ciphertext[0] != formatV1 || ciphertext[1] != typ.typeByte() {
					t.Fatalf("%s: bad header % x", typ, ciphertext[:2])
				}
				got, err := k.Decrypt(ciphertext, ad)
				if err != nil {
					t.Fatalf("%s: Decrypt(%d bytes, ad %d): %v", typ, size, j, err)
				}
				if !bytes.Equal(got, plaintext) {
					t.Fatalf("%s: Decrypt returned other plaintext", typ)
				}
				v, err := CiphertextVersion(ciphertext)
				if err != nil || v != version {
					t.Fatalf("%s: CiphertextVersion = %d, %v; want %d", typ, v, err, version)
				}
			}
		}
	}
}

func TestEmptyAndNilAssociatedDataAreEqual(t *testing.T) {
	for _, typ := range keyTypes {
		k := testKey(t, typ, 0x22)
		c1, err := k.Encrypt(1, []byte("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := k.Encrypt(1, []byte("x"), []byte{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Decrypt(c1, []byte{}); err != nil {
			t.Fatalf("%s: nil AD did not decrypt with empty AD: %v", typ, err)
		}
		if _, err := k.Decrypt(c2, nil); err != nil {
			t.Fatalf("%s: empty AD did not decrypt with nil AD: %v", typ, err)
		}
	}
}

func TestEncryptIsRandomized(t *testing.T) {
	for _, typ := range keyTypes {
		k := testKey(t, typ, 0x33)
		c1, _ := k.Encrypt(1, []byte("same"), nil)
		c2, _ := k.Encrypt(1, []byte("same"), nil)
		if bytes.Equal(c1, c2) {
			t.Fatalf("%s: two encryptions of the same plaintext are equal", typ)
		}
		if bytes.Equal(c1[headerSize:prefixSize], c2[headerSize:prefixSize]) {
			t.Fatalf("%s: iv and nonce repeated", typ)
		}
	}
}

func TestDecryptFailures(t *testing.T) {
	plaintext := []byte("the quick brown fox")
	ad := []byte("enclave/key")
	for _, typ := range keyTypes {
		k := testKey(t, typ, 0x44)
		ciphertext, err := k.Encrypt(7, plaintext, ad)
		if err != nil {
			t.Fatal(err)
		}

		other := testKey(t, typ, 0x45)
		otherType := testKey(t, ChaCha20, 0x44)
		if typ == ChaCha20 {
			otherType = testKey(t, AES256, 0x44)
		}
		// A ciphertext relabelled as the other type, so the type check, not
		// the tag, is what must reject it.
		relabelled := bytes.Clone(ciphertext)
		relabelled[1] = otherType.Type().typeByte()

		tests := []struct {
			name       string
			key        Key
			ciphertext []byte
			ad         []byte
		}{
			{"wrong AD last byte", k, ciphertext, []byte("enclave/kex")},
			{"wrong AD first byte", k, ciphertext, []byte("Enclave/key")},
			{"AD one byte longer", k, ciphertext, []byte("enclave/key/")},
			{"AD one byte shorter", k, ciphertext, []byte("enclave/ke")},
			{"no AD", k, ciphertext, nil},
			{"other key", other, ciphertext, ad},
			{"other type, same material", otherType, ciphertext, ad},
			{"relabelled type", otherType, relabelled, ad},
			{"nil", k, nil, ad},
			{"empty", k, []byte{}, ad},
			{"header only", k, ciphertext[:headerSize], ad},
			{"no payload and tag", k, ciphertext[:prefixSize], ad},
			{"one byte short of minimum", k, ciphertext[:minSize-1], ad},
			{"format 0", k, withByte(ciphertext, 0, 0), ad},
			{"format 2", k, withByte(ciphertext, 0, 2), ad},
			{"type 0", k, withByte(ciphertext, 1, 0), ad},
			{"type 3", k, withByte(ciphertext, 1, 3), ad},
			{"appended byte", k, append(bytes.Clone(ciphertext), 0), ad},
		}
		for _, tt := range tests {
			got, err := tt.key.Decrypt(tt.ciphertext, tt.ad)
			if err != ErrDecrypt || got != nil {
				t.Errorf("%s: %s: Decrypt = %q, %v; want nil, ErrDecrypt", typ, tt.name, got, err)
			}
		}

		for i := range ciphertext {
			for _, mask := range []byte{0x01, 0x80, 0xFF} {
				if _, err := k.Decrypt(withByte(ciphertext, i, ciphertext[i]^mask), ad); err != ErrDecrypt {
					t.Fatalf("%s: flipping byte %d with %#x: got %v, want ErrDecrypt", typ, i, mask, err)
				}
			}
		}
		for n := range len(ciphertext) {
			if _, err := k.Decrypt(ciphertext[:n], ad); err != ErrDecrypt {
				t.Fatalf("%s: truncated to %d bytes: got %v, want ErrDecrypt", typ, n, err)
			}
		}
	}
}

func TestVersionIsAuthenticated(t *testing.T) {
	for _, typ := range keyTypes {
		k := testKey(t, typ, 0x55)
		ciphertext, _ := k.Encrypt(1, []byte("data key"), nil)
		tampered := bytes.Clone(ciphertext)
		binary.BigEndian.PutUint32(tampered[2:headerSize], 2)
		if v, err := CiphertextVersion(tampered); err != nil || v != 2 {
			t.Fatalf("%s: CiphertextVersion of tampered = %d, %v", typ, v, err)
		}
		if _, err := k.Decrypt(tampered, nil); err != ErrDecrypt {
			t.Fatalf("%s: Decrypt with tampered version: got %v, want ErrDecrypt", typ, err)
		}
	}
}

func TestCiphertextVersion(t *testing.T) {
	valid := make([]byte, minSize)
	valid[0], valid[1] = formatV1, typeByteChaCha20
	binary.BigEndian.PutUint32(valid[2:], 0xDEADBEEF)

	tests := []struct {
		name       string
		ciphertext []byte
		want       uint32
		wantErr    bool
	}{
		{name: "valid", ciphertext: valid, want: 0xDEADBEEF},
		{name: "valid aes", ciphertext: withByte(valid, 1, typeByteAES256), want: 0xDEADBEEF},
		{name: "version 0", ciphertext: append([]byte{1, 1, 0, 0, 0, 0}, make([]byte, minSize-headerSize)...)},
		{name: "nil", ciphertext: nil, wantErr: true},
		{name: "header only", ciphertext: valid[:headerSize], wantErr: true},
		{name: "short", ciphertext: valid[:minSize-1], wantErr: true},
		{name: "bad format", ciphertext: withByte(valid, 0, 2), wantErr: true},
		{name: "bad type", ciphertext: withByte(valid, 1, 0), wantErr: true},
		{name: "bad type 3", ciphertext: withByte(valid, 1, 3), wantErr: true},
	}
	for _, tt := range tests {
		got, err := CiphertextVersion(tt.ciphertext)
		if tt.wantErr {
			if err != ErrDecrypt {
				t.Errorf("%s: got %d, %v; want ErrDecrypt", tt.name, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %d, %v; want %d", tt.name, got, err, tt.want)
		}
	}
}

func TestErrDecryptText(t *testing.T) {
	if ErrDecrypt.Error() != "invalid ciphertext" {
		t.Fatalf("ErrDecrypt text changed to %q", ErrDecrypt)
	}
	if !errors.Is(ErrInvalidKeyMaterial, ErrInvalidKeyMaterial) || ErrInvalidKeyMaterial.Error() != "invalid key material" {
		t.Fatalf("ErrInvalidKeyMaterial text changed to %q", ErrInvalidKeyMaterial)
	}
	if ErrInvalidKeyType.Error() != "invalid key type" {
		t.Fatalf("ErrInvalidKeyType text changed to %q", ErrInvalidKeyType)
	}
}

func TestConcurrentUse(t *testing.T) {
	for _, typ := range keyTypes {
		k := testKey(t, typ, 0x66)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 200 {
					plaintext := bytes.Repeat([]byte{byte(g)}, i)
					ad := bytes.Repeat([]byte{byte(i)}, g*100)
					c, err := k.Encrypt(uint32(i), plaintext, ad)
					if err != nil {
						t.Error(err)
						return
					}
					p, err := k.Decrypt(c, ad)
					if err != nil || !bytes.Equal(p, plaintext) {
						t.Errorf("concurrent round trip failed: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}

func TestEncryptAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	plaintext := make([]byte, 32)
	ad := []byte("enclave/key/1")
	for _, typ := range keyTypes {
		k := testKey(t, typ, 0x77)
		ciphertext, _ := k.Encrypt(1, plaintext, ad)
		enc := testing.AllocsPerRun(100, func() { _, _ = k.Encrypt(1, plaintext, ad) })
		dec := testing.AllocsPerRun(100, func() { _, _ = k.Decrypt(ciphertext, ad) })
		t.Logf("%s: %.0f allocs per Encrypt, %.0f per Decrypt", typ, enc, dec)
		// The output plus what the AEAD constructors allocate; more means
		// the scratch pool stopped working.
		if enc > 4 || dec > 4 {
			t.Fatalf("%s: %.0f allocs per Encrypt, %.0f per Decrypt", typ, enc, dec)
		}
	}
}

// withByte returns a copy of b with b[i] set to v.
func withByte(b []byte, i int, v byte) []byte {
	b = bytes.Clone(b)
	b[i] = v
	return b
}
