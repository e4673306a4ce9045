package identity

import (
	"encoding/hex"
	"strings"

	"aead.dev/mtls"
)

// Hex returns the KES spelling of an identity: the lowercase hex of the
// SHA-256 the h1: spelling encodes. Anything that is not an h1: identity is
// returned unchanged.
func Hex(h1 string) string {
	id, err := mtls.ParseIdentity(h1)
	if err != nil || id.IsZero() {
		return h1
	}
	b, _ := id.MarshalBinary() // "h1:" followed by the 32 bytes
	return hex.EncodeToString(b[3:])
}

// FromHex returns the h1: spelling of a KES identity (64 lowercase hex
// digits), and false if id is not one.
func FromHex(id string) (string, bool) {
	if len(id) != 2*32 || strings.ToLower(id) != id {
		return "", false
	}
	sum, err := hex.DecodeString(id)
	if err != nil {
		return "", false
	}
	var i mtls.Identity
	if err := i.UnmarshalBinary(append([]byte("h1:"), sum...)); err != nil {
		return "", false
	}
	return i.String(), true
}
