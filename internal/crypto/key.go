package crypto

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"
)

// KeySize is the length of key material in bytes (32).
const KeySize = 32

// ErrInvalidKeyMaterial is returned when key material has the wrong length.
var ErrInvalidKeyMaterial = errors.New("invalid key material")

// errNoKey is returned by operations on the zero Key, which is a programming
// error rather than bad input.
var errNoKey = errors.New("crypto: key is not initialized")

// Key is one version of a symmetric key: its type and its 32 bytes of
// material; it is cheap to copy and safe for concurrent use.
type Key struct {
	s *keyState // nil for the zero Key
}

// keyState is shared by all copies of a Key so that the pooled HMAC state is
// computed once per key, not once per request. It is kept small: a server
// holds one for each key version it has used.
type keyState struct {
	material [KeySize]byte
	scratch  sync.Pool                     // of *scratch, made by newScratch
	macKey   atomic.Pointer[[KeySize]byte] // derived from material on first use by MAC
	typ      byte                          // the KeyType's typeByte
}

// scratch is per-operation working memory, pooled so that the hot path does
// not allocate it for every request.
type scratch struct {
	// mac holds HMAC-SHA256 keyed with the key material. crypto/hmac caches
	// the inner and outer pad states after the first Reset, so deriving a
	// message key costs two SHA-256 compressions.
	mac hash.Hash
	// buf holds the derived AEAD key followed by the AEAD associated data.
	buf []byte
}

// maxScratch bounds the buffers kept in the pool so that one request with
// huge associated data does not pin that memory forever.
const maxScratch = 4 << 10

// NewKey returns the key of type t with a copy of material, so the caller may
// wipe or reuse its slice.
func NewKey(t KeyType, material []byte) (Key, error) {
	if t.typeByte() == 0 {
		return Key{}, fmt.Errorf("crypto: %w %q", ErrInvalidKeyType, string(t))
	}
	if len(material) != KeySize {
		return Key{}, fmt.Errorf("crypto: %w: %d bytes, want %d", ErrInvalidKeyMaterial, len(material), KeySize)
	}
	s := &keyState{typ: t.typeByte()}
	copy(s.material[:], material)
	return Key{s: s}, nil
}

// GenerateKey returns a new key of type t with material read from random, or
// from crypto/rand if random is nil.
func GenerateKey(t KeyType, random io.Reader) (Key, error) {
	if random == nil {
		random = rand.Reader
	}
	var material [KeySize]byte
	defer clear(material[:])
	if _, err := io.ReadFull(random, material[:]); err != nil {
		return Key{}, fmt.Errorf("crypto: failed to generate key: %w", err)
	}
	return NewKey(t, material[:])
}

// Type returns the algorithm of k, or "" for the zero Key.
func (k Key) Type() KeyType {
	if k.s == nil {
		return ""
	}
	return KeyTypeOf(k.s.typ)
}

// Material returns a copy of the key material so that callers (sealing the
// key under the root key) cannot modify the key in place.
func (k Key) Material() []byte {
	if k.s == nil {
		return nil
	}
	return append([]byte(nil), k.s.material[:]...)
}

// GenerateDEK returns n random bytes for a data key; the caller validates n
// against what its API allows.
func GenerateDEK(n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("crypto: invalid data key length %d", n)
	}
	dek := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, dek); err != nil {
		return nil, fmt.Errorf("crypto: failed to generate data key: %w", err)
	}
	return dek, nil
}

// macInfo is the HKDF info that derives the MAC key of a key version. It
// separates MACs from the per-message AEAD keys, which are HMACs keyed with
// the material itself.
const macInfo = "keep/key/hmac"

// MAC returns HMAC-SHA256 of message, keyed with a MAC key derived from the
// key material: HKDF-SHA256(material, no salt, info "keep/key/hmac"). It is
// deterministic per key version, so no separate MAC key needs storing.
func (k Key) MAC(message []byte) ([]byte, error) {
	if k.s == nil {
		return nil, errNoKey
	}
	mac := hmac.New(sha256.New, k.s.macKeyOf()[:])
	mac.Write(message)
	return mac.Sum(nil), nil
}

// macKeyOf returns the MAC key of s, derived on first use. Goroutines that
// race to derive it derive the same key; one keeps it.
func (s *keyState) macKeyOf() *[KeySize]byte {
	if m := s.macKey.Load(); m != nil {
		return m
	}
	m := new([KeySize]byte)
	// HKDF fails only for an output longer than 255 hashes, not for this.
	key, _ := hkdf.Key(sha256.New, s.material[:], nil, macInfo, KeySize)
	copy(m[:], key)
	clear(key)
	if s.macKey.CompareAndSwap(nil, m) {
		return m
	}
	clear(m[:])
	return s.macKey.Load()
}
