package crypto

import (
	"errors"
	"fmt"
)

// KeyType names the algorithm of a key.
type KeyType string

// The key types Keep supports; their names are part of the API and the
// replicated state, so they never change.
const (
	// AES256 is a 256-bit key used with AES-256-GCM; it is the default because
	// clients expect it and most CPUs accelerate it.
	AES256 KeyType = "AES256"
	// ChaCha20 is a 256-bit key used with ChaCha20-Poly1305, for hardware
	// without AES instructions.
	ChaCha20 KeyType = "ChaCha20"
)

// ErrInvalidKeyType is returned for a key type name Keep does not know.
var ErrInvalidKeyType = errors.New("invalid key type")

// ParseKeyType maps a client supplied name to a KeyType; the empty name means
// AES256 so that clients which do not care need not say so.
func ParseKeyType(s string) (KeyType, error) {
	switch KeyType(s) {
	case "", AES256:
		return AES256, nil
	case ChaCha20:
		return ChaCha20, nil
	default:
		return "", fmt.Errorf("crypto: %w %q", ErrInvalidKeyType, s)
	}
}

// Type bytes in a ciphertext header; they are on disk and on the wire, so they
// must never be renumbered.
const (
	typeByteAES256   byte = 1
	typeByteChaCha20 byte = 2
)

// Code returns the byte that stands for t in a ciphertext's header, or 0
// if t is not a known type: one byte, for whoever keeps the type of many
// keys apart from their material.
func (t KeyType) Code() byte { return t.typeByte() }

// KeyTypeOf returns the key type whose Code is c, or "" for none.
func KeyTypeOf(c byte) KeyType {
	switch c {
	case typeByteAES256:
		return AES256
	case typeByteChaCha20:
		return ChaCha20
	default:
		return ""
	}
}

// typeByte returns the header byte of t, or 0 if t is not a known type.
func (t KeyType) typeByte() byte {
	switch t {
	case AES256:
		return typeByteAES256
	case ChaCha20:
		return typeByteChaCha20
	default:
		return 0
	}
}
