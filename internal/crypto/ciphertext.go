package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// ErrDecrypt is returned for any ciphertext that does not authenticate, is
// malformed, or was made with another key; one error for all cases so that
// callers cannot be used as an oracle telling them apart.
var ErrDecrypt = errors.New("invalid ciphertext")

// Layout of a ciphertext; see the package documentation.
const (
	formatV1   byte = 1
	headerSize      = 1 + 1 + 4 // format, key type, version
	ivSize          = 16
	nonceSize       = 12 // of both AES-GCM and ChaCha20-Poly1305
	tagSize         = 16 // of both AES-GCM and ChaCha20-Poly1305
	prefixSize      = headerSize + ivSize + nonceSize
	minSize         = prefixSize + tagSize

	// Overhead is how much longer a ciphertext of Encrypt is than its
	// plaintext: a sealed key is KeySize+Overhead bytes.
	Overhead = minSize

	// maxPlaintextSize is the smaller of the AES-GCM and ChaCha20-Poly1305
	// limits; beyond it their Seal panics instead of returning an error.
	maxPlaintextSize = (1<<32 - 2) * 16
)

// Encrypt seals plaintext under a fresh per-message key and records version
// in the header so that Decrypt callers can find the key version again.
func (k Key) Encrypt(version uint32, plaintext, associatedData []byte) ([]byte, error) {
	if k.s == nil {
		return nil, errNoKey
	}
	if uint64(len(plaintext)) > maxPlaintextSize {
		return nil, fmt.Errorf("crypto: plaintext of %d bytes is too large", len(plaintext))
	}

	out := make([]byte, prefixSize, prefixSize+len(plaintext)+tagSize)
	out[0] = formatV1
	out[1] = k.s.typ
	binary.BigEndian.PutUint32(out[2:headerSize], version)
	if _, err := io.ReadFull(rand.Reader, out[headerSize:prefixSize]); err != nil {
		return nil, fmt.Errorf("crypto: failed to read random iv and nonce: %w", err)
	}

	sc := k.s.getScratch()
	defer k.s.putScratch(sc)
	aead, ad, err := k.s.prepare(sc, out[:headerSize], out[headerSize:headerSize+ivSize], associatedData)
	if err != nil {
		return nil, fmt.Errorf("crypto: failed to create AEAD: %w", err)
	}
	return aead.Seal(out, out[headerSize+ivSize:prefixSize], plaintext, ad), nil
}

// Decrypt returns the plaintext of a ciphertext made by Encrypt with the same
// key and associated data; every failure is exactly ErrDecrypt so that its
// text is stable on the wire.
func (k Key) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	if k.s == nil || len(ciphertext) < minSize || ciphertext[0] != formatV1 || ciphertext[1] != k.s.typ {
		return nil, ErrDecrypt
	}

	sc := k.s.getScratch()
	defer k.s.putScratch(sc)
	aead, ad, err := k.s.prepare(sc, ciphertext[:headerSize], ciphertext[headerSize:headerSize+ivSize], associatedData)
	if err != nil {
		return nil, ErrDecrypt
	}
	payload := ciphertext[prefixSize:]
	plaintext, err := aead.Open(make([]byte, 0, len(payload)-tagSize), ciphertext[headerSize+ivSize:prefixSize], payload, ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return plaintext, nil
}

// CiphertextVersion returns the key version recorded in a ciphertext's header
// (ErrDecrypt if the header is malformed), so that a decrypt request without
// a version can pick the key version the ciphertext was made with.
func CiphertextVersion(ciphertext []byte) (uint32, error) {
	if len(ciphertext) < minSize || ciphertext[0] != formatV1 {
		return 0, ErrDecrypt
	}
	if t := ciphertext[1]; t != typeByteAES256 && t != typeByteChaCha20 {
		return 0, ErrDecrypt
	}
	return binary.BigEndian.Uint32(ciphertext[2:headerSize]), nil
}

// getScratch returns pooled working memory whose HMAC is keyed with s.
func (s *keyState) getScratch() *scratch {
	if sc, ok := s.scratch.Get().(*scratch); ok {
		return sc
	}
	return s.newScratch()
}

// newScratch makes working memory for s. The pool has no New function,
// whose closure would cost every key an allocation.
func (s *keyState) newScratch() *scratch {
	mac := hmac.New(sha256.New, s.material[:])
	mac.Reset() // makes crypto/hmac precompute the pad states
	return &scratch{mac: mac, buf: make([]byte, 0, 128)}
}

// putScratch returns sc to the pool unless its buffer grew too large to keep.
func (s *keyState) putScratch(sc *scratch) {
	if cap(sc.buf) > maxScratch {
		sc.buf = nil
	} else {
		sc.buf = sc.buf[:0]
	}
	s.scratch.Put(sc)
}

// prepare derives the AEAD of the message with the given iv and builds its
// associated data, header || associatedData, in sc. The returned slice is
// only valid until sc goes back to the pool.
func (s *keyState) prepare(sc *scratch, header, iv, associatedData []byte) (cipher.AEAD, []byte, error) {
	sc.mac.Reset()
	sc.mac.Write(iv)
	sc.buf = sc.mac.Sum(sc.buf[:0])
	aead, err := s.newAEAD(sc.buf[:KeySize])
	clear(sc.buf[:KeySize]) // the AEAD keeps its own copy
	if err != nil {
		return nil, nil, err
	}
	sc.buf = append(sc.buf, header...)
	sc.buf = append(sc.buf, associatedData...)
	return aead, sc.buf[KeySize:], nil
}

// newAEAD returns the AEAD of s's key type keyed with key.
func (s *keyState) newAEAD(key []byte) (cipher.AEAD, error) {
	if s.typ == typeByteChaCha20 {
		return chacha20poly1305.New(key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
