package hsm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"aead.dev/mtls"

	"github.com/keep-kms/keep/internal/crypto"
)

// testSoftKey is the soft HSM key of bytes 0..31; fuzz seeds are sealed with it.
const testSoftKey = "hsm:aes256:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func mustParse(tb testing.TB, s string) *Soft {
	tb.Helper()
	soft, err := ParseSoftKey(s)
	if err != nil {
		tb.Fatal(err)
	}
	return soft
}

func TestParseSoftKey(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	key32 := bytes.Repeat([]byte{0x5A}, 32)
	valid := b64(key32)
	tests := []struct {
		name    string
		in      string
		wantErr string // a fragment of the error text, "" for success
	}{
		{name: "valid", in: testSoftKey},
		{name: "valid repeated", in: "hsm:aes256:" + valid},
		{name: "empty", in: "", wantErr: "missing prefix"},
		{name: "no prefix", in: valid, wantErr: "missing prefix"},
		{name: "other algorithm", in: "hsm:aes128:" + valid, wantErr: "missing prefix"},
		{name: "upper case prefix", in: "HSM:AES256:" + valid, wantErr: "missing prefix"},
		{name: "leading space", in: " hsm:aes256:" + valid, wantErr: "missing prefix"},
		{name: "nothing after prefix", in: "hsm:aes256:", wantErr: "key is 0 bytes"},
		{name: "bad character", in: "hsm:aes256:*" + valid[1:], wantErr: "base64"},
		{name: "url alphabet", in: "hsm:aes256:" + strings.Repeat("-", 43) + "=", wantErr: "base64"},
		{name: "unpadded", in: "hsm:aes256:" + strings.TrimRight(valid, "="), wantErr: "base64"},
		{name: "trailing newline", in: "hsm:aes256:" + valid + "\n", wantErr: "canonical"},
		{name: "inner newline", in: "hsm:aes256:" + valid[:20] + "\r\n" + valid[20:], wantErr: "canonical"},
		{name: "non-zero padding bits", in: "hsm:aes256:" + valid[:42] + "b=", wantErr: "base64"},
		{name: "short 16 bytes", in: "hsm:aes256:" + b64(key32[:16]), wantErr: "key is 16 bytes, want 32"},
		{name: "short 31 bytes", in: "hsm:aes256:" + b64(key32[:31]), wantErr: "key is 31 bytes, want 32"},
		{name: "long 33 bytes", in: "hsm:aes256:" + b64(append(key32, 1)), wantErr: "key is 33 bytes, want 32"},
		{name: "long 64 bytes", in: "hsm:aes256:" + b64(append(key32, key32...)), wantErr: "longer than 32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			soft, err := ParseSoftKey(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if soft.Name() != "hsm:aes256" {
					t.Fatalf("Name() = %q", soft.Name())
				}
				return
			}
			if err == nil {
				t.Fatal("ParseSoftKey succeeded")
			}
			if soft != nil {
				t.Fatal("ParseSoftKey returned a Soft with an error")
			}
			if !errors.Is(err, errSoftKey) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %q, want one containing %q", err, tt.wantErr)
			}
			assertNoKeyInError(t, err)
		})
	}
}

// softKeyError matches every error ParseSoftKey may return. Matching whole
// messages, rather than searching them for parts of the key, proves that no
// input byte can reach the text.
var softKeyError = regexp.MustCompile(`^hsm: invalid soft HSM key: (` +
	`missing prefix "hsm:aes256:"|` +
	`key is longer than 32 bytes|` +
	`not padded standard base64: illegal base64 data at input byte [0-9]+|` +
	`key is [0-9]+ bytes, want 32|` +
	`not canonical standard base64)$`)

// assertNoKeyInError fails if err is not one of the fixed ParseSoftKey
// messages, which carry at most lengths and offsets.
func assertNoKeyInError(t *testing.T, err error) {
	t.Helper()
	if !softKeyError.MatchString(err.Error()) {
		t.Fatalf("unexpected error text %q", err)
	}
}

func TestGenerateSoftKey(t *testing.T) {
	s1, err := GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if s1 == s2 {
		t.Fatal("GenerateSoftKey returned the same key twice")
	}
	for _, s := range []string{s1, s2} {
		if !strings.HasPrefix(s, "hsm:aes256:") || len(s) != len("hsm:aes256:")+44 {
			t.Fatalf("GenerateSoftKey returned a key of the wrong form (length %d)", len(s))
		}
		mustParse(t, s)
	}

	s, err := GenerateSoftKey(bytes.NewReader(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	if want := "hsm:aes256:" + strings.Repeat("A", 43) + "="; s != want {
		t.Fatal("GenerateSoftKey did not use the given random source")
	}
	if _, err := GenerateSoftKey(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Fatal("GenerateSoftKey with a short random source succeeded")
	}
}

func TestSealUnseal(t *testing.T) {
	ctx := context.Background()
	soft := mustParse(t, testSoftKey)
	for _, size := range []int{0, 1, 32, 1000} {
		plaintext := bytes.Repeat([]byte{byte(size)}, size)
		ciphertext, err := soft.Seal(ctx, plaintext)
		if err != nil {
			t.Fatal(err)
		}
		// A second Soft of the same key must unseal: the root key is sealed
		// by one process and unsealed by the next.
		got, err := mustParse(t, testSoftKey).Unseal(ctx, ciphertext)
		if err != nil {
			t.Fatalf("Unseal(%d bytes): %v", size, err)
		}
		if !bytes.Equal(got, plaintext) {
			t.Fatalf("Unseal(%d bytes) returned other plaintext", size)
		}
	}
}

func TestUnsealFailures(t *testing.T) {
	ctx := context.Background()
	soft := mustParse(t, testSoftKey)
	ciphertext, err := soft.Seal(ctx, []byte("root encryption key"))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Made with the sealing key itself but without the HSM's associated
	// data, as if an ordinary ciphertext were handed to the HSM.
	unbound, err := soft.seal.Encrypt(0, []byte("root encryption key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(ciphertext)
	flipped[len(flipped)-1] ^= 1

	tests := []struct {
		name       string
		soft       *Soft
		ciphertext []byte
	}{
		{"other soft key", mustParse(t, otherKey), ciphertext},
		{"no HSM associated data", soft, unbound},
		{"flipped bit", soft, flipped},
		{"truncated", soft, ciphertext[:len(ciphertext)-1]},
		{"empty", soft, nil},
		{"garbage", soft, []byte("not a ciphertext at all, not at all, no no no no no")},
	}
	for _, tt := range tests {
		got, err := tt.soft.Unseal(ctx, tt.ciphertext)
		if got != nil || !errors.Is(err, crypto.ErrDecrypt) || err.Error() != "invalid ciphertext" {
			t.Errorf("%s: Unseal = %q, %v; want nil, %q", tt.name, got, err, "invalid ciphertext")
		}
	}
}

func TestPrivateKey(t *testing.T) {
	ctx := context.Background()
	a1, a2 := mustParse(t, testSoftKey), mustParse(t, testSoftKey)
	otherKey, err := GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := mustParse(t, otherKey)

	derive := func(s *Soft, seed string) mtls.PrivateKey {
		t.Helper()
		k, err := s.PrivateKey(ctx, []byte(seed))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := k.(*mtls.EdDSAPrivateKey); !ok {
			t.Fatalf("PrivateKey returned a %T, want *mtls.EdDSAPrivateKey", k)
		}
		return k
	}
	tests := []struct {
		name      string
		x, y      mtls.PrivateKey
		wantEqual bool
	}{
		{"same key and seed", derive(a1, "seed"), derive(a2, "seed"), true},
		{"empty seed", derive(a1, ""), derive(a2, ""), true},
		{"other seed", derive(a1, "seed"), derive(a1, "seed2"), false},
		{"seed prefix", derive(a1, "seed"), derive(a1, "see"), false},
		{"other HSM key", derive(a1, "seed"), derive(b, "seed"), false},
		{"root vs node", derive(a1, string(RootAPIKeySeed)), derive(a1, string(NodeKeySeed)), false},
	}
	for _, tt := range tests {
		if equal := tt.x.String() == tt.y.String(); equal != tt.wantEqual {
			t.Errorf("%s: keys equal = %v, want %v", tt.name, equal, tt.wantEqual)
		}
		if equal := tt.x.Identity() == tt.y.Identity(); equal != tt.wantEqual {
			t.Errorf("%s: identities equal = %v, want %v", tt.name, equal, tt.wantEqual)
		}
	}
}

func TestRootAPIKey(t *testing.T) {
	ctx := context.Background()
	soft := mustParse(t, testSoftKey)
	key, err := RootAPIKey(ctx, soft)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key.String(), "k1:") {
		t.Fatal("root API key does not start with k1:")
	}
	if !strings.HasPrefix(key.Identity().String(), "h1:") {
		t.Fatalf("root API key identity %q does not start with h1:", key.Identity())
	}
	direct, err := soft.PrivateKey(ctx, RootAPIKeySeed)
	if err != nil {
		t.Fatal(err)
	}
	if direct.String() != key.String() {
		t.Fatal("RootAPIKey differs from PrivateKey(RootAPIKeySeed)")
	}
	// Pinned so that a change to the derivation, which would lock every
	// operator out of existing clusters, fails here first.
	const wantIdentity = "h1:-dM52M5Cn2oOsKv0v8sXjQxL4WXuYchzN9wt559U9PA"
	if got := key.Identity().String(); got != wantIdentity {
		t.Fatalf("root API key identity of the test HSM key changed: got %q, want %q", got, wantIdentity)
	}
}

func TestSoftDoesNotPrintSecrets(t *testing.T) {
	soft := mustParse(t, testSoftKey)
	payload := strings.TrimPrefix(testSoftKey, "hsm:aes256:")
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		got := fmt.Sprintf(format, soft)
		if got != "hsm:aes256" {
			t.Errorf("Sprintf(%q, soft) = %q, want the name", format, got)
		}
		byValue := fmt.Sprintf(format, *soft)
		if strings.Contains(byValue, payload) || strings.Contains(byValue, "\x00\x01\x02") {
			t.Errorf("Sprintf(%q, *soft) shows the key", format)
		}
	}
}

func TestUnsealKnownAnswer(t *testing.T) {
	// Sealed by an earlier build with testSoftKey; if this stops unsealing,
	// existing clusters could no longer unseal their root encryption key.
	const sealed = "0101000000006f214d8a4c47cbafbdc806b856641a1514b0f577668f694b753f8d508e83a8dfb3414e9d2265ba43aaa8a384a638716b7248f54fe6839f122222549ef82935"
	ciphertext, err := hex.DecodeString(sealed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := mustParse(t, testSoftKey).Unseal(context.Background(), ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "root encryption key" {
		t.Fatalf("Unseal = %q", got)
	}
}
