package kes

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"strings"
	"testing"

	"aead.dev/mtls"
	"github.com/keep-kms/keep/internal/identity"
	"github.com/minio/kms-go/kes"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"my-key", true},
		{"minio-default-key", true},
		{"A_b-9", true},
		{"_x", true},
		{"x_", true},
		{"__", true},
		{strings.Repeat("a", 80), true},
		{"0426fa9a04bc2756b92fbe8a97e1a1e07b53ecf04ed33da22c33e5c9faeb8cbb", true}, // a hex identity
		{"", false},
		{"_", false},
		{"-key", false},
		{"key-", false},
		{"-", false},
		{strings.Repeat("a", 81), false},
		{"a.b", false}, // a Keep name, not a KES name
		{"a+b", false},
		{"a@b", false},
		{"a/b", false},
		{"a b", false},
		{"*", false},
		{"a*", false},
		{"h1:abc", false},
		{"schlüssel", false},
	}
	for _, tt := range tests {
		if got := validName(tt.name); got != tt.want {
			t.Errorf("validName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestValidPattern(t *testing.T) {
	tests := []struct {
		pattern string
		want    bool
		prefix  string
	}{
		{"", true, ""},
		{"*", true, ""},
		{"my", true, "my"},
		{"my*", true, "my"},
		{"my-*", true, "my-"},
		{"my_key", true, "my_key"},
		{strings.Repeat("a", 80), true, strings.Repeat("a", 80)},
		{"_", false, ""},
		{"my-", false, ""},
		{"-my", false, ""},
		{"*my", false, ""},
		{"m*y", false, ""},
		{"**", false, ""},
		{"a.b*", false, ""},
		{strings.Repeat("a", 81), false, ""},
	}
	for _, tt := range tests {
		if got := validPattern(tt.pattern); got != tt.want {
			t.Errorf("validPattern(%q) = %v, want %v", tt.pattern, got, tt.want)
		}
		if tt.want {
			if got := listPrefix(tt.pattern); got != tt.prefix {
				t.Errorf("listPrefix(%q) = %q, want %q", tt.pattern, got, tt.prefix)
			}
		}
	}
}

// The test vectors of spec §1.3: KES API keys and their identities.
var apiKeyVectors = []struct{ key, identity string }{
	{"kes:v1:ACQpoGqx3rHHjT938Hfu5hVVQJHZWSqVI2Xp1KlYxFVw", "0426fa9a04bc2756b92fbe8a97e1a1e07b53ecf04ed33da22c33e5c9faeb8cbb"},
	{"kes:v1:AMxvd2uV1l5dDSRwuKZxSjuM5BDemlr+685+JAHA1TuJ", "ab785e3b95d80d72cc9c27cb9fde886a0bf9068a69d40e3bd08a54e68c3f2bf7"},
	{"kes:v1:AD9E7FSYWrMD+VjhI6q545cYT9YOyFxZb7UnjEepYDRc", "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22"},
}

// k1Of returns the k1: spelling of a kes:v1: key, computed by hand:
// base64url without padding of the seed after the type byte.
func k1Of(t *testing.T, kesKey string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(kesKey, "kes:v1:"))
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 0 {
		t.Fatalf("bad test vector %q", kesKey)
	}
	return "k1:" + base64.RawURLEncoding.EncodeToString(b[1:])
}

func TestIdentitySpellings(t *testing.T) {
	for _, v := range apiKeyVectors {
		k, err := mtls.ParsePrivateKey(k1Of(t, v.key))
		if err != nil {
			t.Fatal(err)
		}
		h1 := k.Identity().String()
		if got := identity.Hex(h1); got != v.identity {
			t.Errorf("identity.Hex(%s) = %s, want %s", h1, got, v.identity)
		}
		if got, ok := identity.FromHex(v.identity); !ok || got != h1 {
			t.Errorf("identity.FromHex(%s) = %s, %v, want %s", v.identity, got, ok, h1)
		}
		if got, ok := APIKey(k); !ok || got != v.key {
			t.Errorf("APIKey(%s) = %s, %v, want %s", k, got, ok, v.key)
		}
		// The KES client computes the same identity for the kes:v1: spelling.
		ck, err := kes.ParseAPIKey(v.key)
		if err != nil {
			t.Fatal(err)
		}
		if ck.Identity().String() != v.identity {
			t.Errorf("kes client: identity of %s = %s, want %s", v.key, ck.Identity(), v.identity)
		}
	}

	for _, bad := range []string{
		"",
		"0426FA9A04BC2756B92FBE8A97E1A1E07B53ECF04ED33DA22C33E5C9FAEB8CBB", // KES identities are lowercase
		"0426fa9a04bc2756b92fbe8a97e1a1e07b53ecf04ed33da22c33e5c9faeb8c",   // short
		"0426fa9a04bc2756b92fbe8a97e1a1e07b53ecf04ed33da22c33e5c9faeb8cbbaa",
		"zz26fa9a04bc2756b92fbe8a97e1a1e07b53ecf04ed33da22c33e5c9faeb8cbb",
		"h1:BCb6mgS8J1a5L76Kl-Gh4HtT7PBO0z2iLDPlyfrrjLs",
	} {
		if got, ok := identity.FromHex(bad); ok {
			t.Errorf("identity.FromHex(%q) = %q, want not an identity", bad, got)
		}
	}
	for _, notH1 := range []string{"", "admin", "0426fa9a", "h1:short"} {
		if got := identity.Hex(notH1); got != notH1 {
			t.Errorf("identity.Hex(%q) = %q, want it unchanged", notH1, got)
		}
	}
	ec, err := mtls.GenerateKeyECDSA(elliptic.P256(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := APIKey(ec); ok {
		t.Errorf("APIKey of an ECDSA key = %q, want none: kes:v1: keys are Ed25519 only", got)
	}
}
