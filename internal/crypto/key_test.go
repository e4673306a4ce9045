package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
)

var keyTypes = []KeyType{AES256, ChaCha20}

func TestNewKey(t *testing.T) {
	tests := []struct {
		name    string
		typ     KeyType
		size    int
		wantErr error
	}{
		{name: "aes256", typ: AES256, size: KeySize},
		{name: "chacha20", typ: ChaCha20, size: KeySize},
		{name: "empty", typ: AES256, size: 0, wantErr: ErrInvalidKeyMaterial},
		{name: "short", typ: AES256, size: KeySize - 1, wantErr: ErrInvalidKeyMaterial},
		{name: "long", typ: ChaCha20, size: KeySize + 1, wantErr: ErrInvalidKeyMaterial},
		{name: "aes128 length", typ: AES256, size: 16, wantErr: ErrInvalidKeyMaterial},
		{name: "empty type", typ: "", size: KeySize, wantErr: ErrInvalidKeyType},
		{name: "unknown type", typ: "aes256", size: KeySize, wantErr: ErrInvalidKeyType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			material := bytes.Repeat([]byte{0xA5}, tt.size)
			k, err := NewKey(tt.typ, material)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got error %v, want %v", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\xA5") {
					t.Fatalf("error %q contains key material", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Type() != tt.typ {
				t.Fatalf("Type() = %q, want %q", k.Type(), tt.typ)
			}
			if !bytes.Equal(k.Material(), material) {
				t.Fatal("Material() differs from the material given to NewKey")
			}
		})
	}
}

func TestNewKeyCopiesMaterial(t *testing.T) {
	material := bytes.Repeat([]byte{1}, KeySize)
	k, err := NewKey(AES256, material)
	if err != nil {
		t.Fatal(err)
	}
	ciphertext, err := k.Encrypt(1, []byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	clear(material)
	k.Material()[0] ^= 0xFF // must not change the key either
	if got := k.Material(); !bytes.Equal(got, bytes.Repeat([]byte{1}, KeySize)) {
		t.Fatal("key material changed through a caller's slice")
	}
	if _, err := k.Decrypt(ciphertext, nil); err != nil {
		t.Fatalf("Decrypt after wiping the caller's slice: %v", err)
	}
}

func TestGenerateKey(t *testing.T) {
	for _, typ := range keyTypes {
		k1, err := GenerateKey(typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := GenerateKey(typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		if k1.Type() != typ || len(k1.Material()) != KeySize {
			t.Fatalf("GenerateKey(%q): type %q, %d bytes", typ, k1.Type(), len(k1.Material()))
		}
		if bytes.Equal(k1.Material(), k2.Material()) {
			t.Fatalf("GenerateKey(%q) returned the same material twice", typ)
		}
	}

	r := bytes.NewReader(bytes.Repeat([]byte{7}, KeySize))
	k, err := GenerateKey(ChaCha20, r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Material(), bytes.Repeat([]byte{7}, KeySize)) {
		t.Fatal("GenerateKey did not use the given random source")
	}

	if _, err := GenerateKey(AES256, bytes.NewReader(make([]byte, KeySize-1))); err == nil {
		t.Fatal("GenerateKey with a short random source succeeded")
	}
	if _, err := GenerateKey("DES", nil); !errors.Is(err, ErrInvalidKeyType) {
		t.Fatalf("GenerateKey(DES): got %v, want ErrInvalidKeyType", err)
	}
}

func TestZeroKey(t *testing.T) {
	var k Key
	if k.Type() != "" || k.Material() != nil {
		t.Fatal("zero Key has a type or material")
	}
	if _, err := k.Encrypt(1, nil, nil); err == nil {
		t.Fatal("Encrypt with the zero Key succeeded")
	}
	other, err := GenerateKey(AES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	ciphertext, err := other.Encrypt(1, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Decrypt(ciphertext, nil); err != ErrDecrypt {
		t.Fatalf("Decrypt with the zero Key: got %v, want ErrDecrypt", err)
	}
}

func TestGenerateDEK(t *testing.T) {
	for _, n := range []int{0, 1, 16, 32, 64, 1024} {
		dek, err := GenerateDEK(n)
		if err != nil {
			t.Fatalf("GenerateDEK(%d): %v", n, err)
		}
		if len(dek) != n {
			t.Fatalf("GenerateDEK(%d) returned %d bytes", n, len(dek))
		}
	}
	a, _ := GenerateDEK(32)
	b, _ := GenerateDEK(32)
	if bytes.Equal(a, b) {
		t.Fatal("GenerateDEK returned the same bytes twice")
	}
	if _, err := GenerateDEK(-1); err == nil {
		t.Fatal("GenerateDEK(-1) succeeded")
	}
}

func TestMAC(t *testing.T) {
	// Expected values computed independently (Python hmac/hashlib, HKDF per
	// RFC 5869 with an empty salt and info "keep/key/hmac").
	seq := make([]byte, KeySize)
	for i := range seq {
		seq[i] = byte(i)
	}
	tests := []struct {
		name     string
		typ      KeyType
		material []byte
		message  string
		want     string
	}{
		{"zero key, empty message", AES256, make([]byte, KeySize), "", "854878670492a3969c273ff917de38bb0b3b85d90c84594762ae93a74948d726"},
		{"sequence key", AES256, seq, "root access key", "8f2e78243a324692ac1c89f1f226e5a33344013021335af87d3cf4862eb7232d"},
		{"type does not matter", ChaCha20, seq, "root access key", "8f2e78243a324692ac1c89f1f226e5a33344013021335af87d3cf4862eb7232d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewKey(tt.typ, tt.material)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // deterministic, also once the MAC key is cached
				got, err := k.MAC([]byte(tt.message))
				if err != nil {
					t.Fatal(err)
				}
				if hex.EncodeToString(got) != tt.want {
					t.Fatalf("MAC = %x, want %s", got, tt.want)
				}
			}
			// A first MAC from many goroutines at once, which race to
			// derive the MAC key (run with -race).
			fresh, _ := NewKey(tt.typ, tt.material)
			got := make([][]byte, 8)
			var wg sync.WaitGroup
			for i := range got {
				wg.Go(func() { got[i], _ = fresh.MAC([]byte(tt.message)) })
			}
			wg.Wait()
			for _, mac := range got {
				if hex.EncodeToString(mac) != tt.want {
					t.Fatalf("concurrent MAC = %x, want %s", mac, tt.want)
				}
			}
		})
	}
	a, _ := GenerateKey(AES256, nil)
	b, _ := GenerateKey(AES256, nil)
	ma, _ := a.MAC([]byte("m"))
	mb, _ := b.MAC([]byte("m"))
	if bytes.Equal(ma, mb) {
		t.Fatal("two keys give the same MAC")
	}
	if _, err := (Key{}).MAC(nil); err == nil {
		t.Fatal("MAC of the zero Key succeeded")
	}
}
