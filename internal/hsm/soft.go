package hsm

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"aead.dev/mtls"

	"github.com/keep-kms/keep/internal/crypto"
)

// Soft is the software HSM of a key "hsm:aes256:<std base64, padded, of 32
// bytes>", for deployments without a hardware HSM.
//
// Everything is derived from the 32-byte HSM key with HKDF-SHA256 (no salt):
// the sealing key with info "keep/hsm/seal", and the Ed25519 seed of
// PrivateKey(seed) with info "keep/hsm/private-key/" + seed. These strings
// are part of every existing cluster's state and must never change.
type Soft struct {
	// Secrets sit behind pointers so that printing a Soft by value shows
	// addresses, not key bytes.
	seal crypto.Key
	prk  *[sha256.Size]byte // HKDF pseudorandom key of the HSM key
	name string             // "" = LegacyName
}

const (
	softKeyPrefix = "hsm:aes256:"
	softKeySize   = 32

	infoSeal       = "keep/hsm/seal"
	infoPrivateKey = "keep/hsm/private-key/"
)

var _ HSM = (*Soft)(nil)

// sealAD binds sealed values to the HSM, so that an HSM ciphertext cannot be
// passed off as another ciphertext made with the same key, or vice versa.
var sealAD = []byte("keep/hsm/seal")

// errSoftKey is the common prefix of every ParseSoftKey error.
var errSoftKey = errors.New("invalid soft HSM key")

// ParseSoftKey parses a "hsm:aes256:…" key; its errors never contain any
// part of s because s is the cluster's master secret.
func ParseSoftKey(s string) (*Soft, error) {
	enc, ok := strings.CutPrefix(s, softKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("hsm: %w: missing prefix %q", errSoftKey, softKeyPrefix)
	}
	var key [softKeySize + 3]byte // room to tell a long key from a valid one
	defer clear(key[:])
	if base64.StdEncoding.DecodedLen(len(enc)) > len(key) {
		return nil, fmt.Errorf("hsm: %w: key is longer than %d bytes", errSoftKey, softKeySize)
	}
	n, err := base64.StdEncoding.Strict().Decode(key[:], []byte(enc))
	if err != nil {
		// base64.CorruptInputError holds only an offset, never input bytes.
		return nil, fmt.Errorf("hsm: %w: not padded standard base64: %w", errSoftKey, err)
	}
	if n != softKeySize {
		return nil, fmt.Errorf("hsm: %w: key is %d bytes, want %d", errSoftKey, n, softKeySize)
	}
	// The decoder skips CR and LF, so only an exact re-encoding proves the
	// key has a single spelling.
	var canonical [44]byte
	defer clear(canonical[:])
	base64.StdEncoding.Encode(canonical[:], key[:softKeySize])
	if subtle.ConstantTimeCompare(canonical[:], []byte(enc)) != 1 {
		return nil, fmt.Errorf("hsm: %w: not canonical standard base64", errSoftKey)
	}
	return newSoft(key[:softKeySize])
}

// GenerateSoftKey returns a new "hsm:aes256:…" key read from random, or from
// crypto/rand if random is nil.
func GenerateSoftKey(random io.Reader) (string, error) {
	if random == nil {
		random = rand.Reader
	}
	var key [softKeySize]byte
	defer clear(key[:])
	if _, err := io.ReadFull(random, key[:]); err != nil {
		return "", fmt.Errorf("hsm: failed to generate soft HSM key: %w", err)
	}
	return softKeyPrefix + base64.StdEncoding.EncodeToString(key[:]), nil
}

// newSoft derives the sealing key and the HKDF pseudorandom key from key.
func newSoft(key []byte) (*Soft, error) {
	prk, err := hkdf.Extract(sha256.New, key, nil)
	if err != nil {
		return nil, fmt.Errorf("hsm: failed to derive soft HSM keys: %w", err)
	}
	defer clear(prk)
	sealKey, err := hkdf.Expand(sha256.New, prk, infoSeal, crypto.KeySize)
	if err != nil {
		return nil, fmt.Errorf("hsm: failed to derive soft HSM sealing key: %w", err)
	}
	defer clear(sealKey)
	seal, err := crypto.NewKey(crypto.AES256, sealKey)
	if err != nil {
		return nil, fmt.Errorf("hsm: failed to derive soft HSM sealing key: %w", err)
	}
	s := &Soft{seal: seal, prk: new([sha256.Size]byte)}
	copy(s.prk[:], prk)
	return s, nil
}

// Name returns the HSM's name in the cluster: the one its configuration
// gives, or LegacyName.
func (s *Soft) Name() string {
	if s.name == "" {
		return LegacyName
	}
	return s.name
}

// SetName names the HSM in the cluster; call it before the HSM is used.
func (s *Soft) SetName(name string) { s.name = name }

// String returns Name so that printing a Soft never reveals key material.
func (s *Soft) String() string { return s.Name() }

// GoString returns Name so that %#v never reveals key material either.
func (s *Soft) GoString() string { return s.Name() }

// Seal encrypts plaintext with the sealing key; it never blocks, so ctx is
// not consulted.
func (s *Soft) Seal(_ context.Context, plaintext []byte) ([]byte, error) {
	ciphertext, err := s.seal.Encrypt(0, plaintext, sealAD)
	if err != nil {
		return nil, fmt.Errorf("hsm: failed to seal: %w", err)
	}
	return ciphertext, nil
}

// Unseal decrypts what Seal returned; every failure is exactly
// crypto.ErrDecrypt, as the HSM interface requires.
func (s *Soft) Unseal(_ context.Context, ciphertext []byte) ([]byte, error) {
	plaintext, err := s.seal.Decrypt(ciphertext, sealAD)
	if err != nil {
		return nil, crypto.ErrDecrypt
	}
	return plaintext, nil
}

// PrivateKey returns the Ed25519 key whose seed is HKDF-Expand of the HSM key
// with info "keep/hsm/private-key/" + seed.
func (s *Soft) PrivateKey(_ context.Context, seed []byte) (mtls.PrivateKey, error) {
	if s.prk == nil {
		return nil, errors.New("hsm: soft HSM was not created by ParseSoftKey")
	}
	ed25519Seed, err := hkdf.Expand(sha256.New, s.prk[:], infoPrivateKey+string(seed), 32)
	if err != nil {
		return nil, fmt.Errorf("hsm: failed to derive private key: %w", err)
	}
	defer clear(ed25519Seed)
	return ed25519Key(ed25519Seed)
}

// ed25519Key returns the mtls private key of a 32-byte Ed25519 seed; every
// HSM builds its derived keys here so that they share one encoding.
func ed25519Key(seed []byte) (mtls.PrivateKey, error) {
	// mtls has no constructor from a seed; its k1: text form is one.
	key, err := mtls.ParsePrivateKey("k1:" + base64.RawURLEncoding.EncodeToString(seed))
	if err != nil {
		return nil, fmt.Errorf("hsm: failed to create private key: %w", err)
	}
	return key, nil
}

// Close does nothing: Soft holds no handles, and Go cannot reliably wipe the
// key copies the runtime and the AEAD implementations keep.
func (s *Soft) Close() error { return nil }
