package kesformat

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrNoHMACKey is returned for an HMAC of a key without an HMAC key (every key
// from a JSON key file); KES answers such a request with 409 "key does not
// support HMAC".
var ErrNoHMACKey = errors.New("key does not support HMAC")

// HMAC returns what KES's /v1/key/hmac/ returns for message: HMAC-SHA256
// keyed with the 32-byte HMAC key of a KES key (not with its key material).
func HMAC(hmacKey, message []byte) ([]byte, error) {
	if len(hmacKey) != KeySize {
		return nil, fmt.Errorf("kesformat: HMAC key is %d bytes, want %d", len(hmacKey), KeySize)
	}
	mac := hmac.New(sha256.New, hmacKey)
	mac.Write(message)
	return mac.Sum(nil), nil
}

// HMAC returns KES's HMAC of message under k, or ErrNoHMACKey if k has no
// HMAC key.
func (k *Key) HMAC(message []byte) ([]byte, error) {
	if k.HMACKey == nil {
		return nil, fmt.Errorf("kesformat: key %q: %w", k.Name, ErrNoHMACKey)
	}
	return HMAC(k.HMACKey, message)
}
