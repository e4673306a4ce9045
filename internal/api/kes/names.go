package kes

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"

	"aead.dev/mtls"

	"github.com/keep-kms/keep/internal/kesformat"
)

// maxNameLen bounds KES names and listing patterns.
const maxNameLen = kesformat.MaxNameLen

// validName reports whether s may name a key, policy or identity on the
// KES API (spec §2.2). KES names are Keep names, but not every Keep name is
// a KES name: keys named with . + @ are reachable on the MinIO KMS API only.
func validName(s string) bool { return kesformat.ValidName(s) }

// validPattern reports whether s may be a listing pattern: "*", or up to 80
// characters of a name with an optional "*" at the end; empty means all.
func validPattern(s string) bool {
	if s == "*" {
		return true
	}
	if s == "_" || len(s) > maxNameLen {
		return false
	}
	last := len(s) - 1
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c == '_':
		case c == '-' && i > 0 && i < last:
		case c == '*' && i == last:
		default:
			return false
		}
	}
	return true
}

// listPrefix turns a valid listing pattern into the name prefix it
// selects: "" and "*" select everything, "p*" and "p" the names starting
// with p. KES leaves the "*" on key patterns, so that 'my*' matches no key;
// Keep strips it for keys too.
func listPrefix(pattern string) string {
	return strings.TrimSuffix(pattern, "*")
}

// APIKey returns the KES spelling of a k1: API key, kes:v1: followed by
// the standard base64 (padded) of 0x00 (Ed25519) and the 32-byte seed, and
// false for keys other than Ed25519 ones.
func APIKey(k mtls.PrivateKey) (string, bool) {
	ek, ok := k.(*mtls.EdDSAPrivateKey)
	if !ok {
		return "", false
	}
	priv, ok := ek.Private().(ed25519.PrivateKey)
	if !ok {
		return "", false
	}
	b := append([]byte{0}, priv.Seed()...)
	return "kes:v1:" + base64.StdEncoding.EncodeToString(b), true
}
