package state

import (
	"fmt"

	"github.com/keep-kms/keep/internal/crypto"
)

// keyAAD binds sealed key material to the key it belongs to, so that sealed
// material moved to another key in the log does not unseal.
func keyAAD(enclave, name string) []byte {
	return []byte("keep/key/" + enclave + "/" + name)
}

// SealKey seals key material under the root key, for the KeyArgs of an entry.
func (s *State) SealKey(enclave, name string, k crypto.Key) ([]byte, error) {
	s.mu.RLock()
	root := s.rootKey
	initialized := s.clusterID != ""
	s.mu.RUnlock()
	if !initialized {
		return nil, ErrNotInitialized
	}
	return root.Encrypt(0, k.Material(), keyAAD(enclave, name))
}

// unsealKey is SealKey's reverse; the caller holds s.mu.
func (s *State) unsealKey(enclave, name string, t crypto.KeyType, sealed []byte) (crypto.Key, error) {
	material, err := s.rootKey.Decrypt(sealed, keyAAD(enclave, name))
	if err != nil {
		return crypto.Key{}, fmt.Errorf("failed to unseal key %q of enclave %q: %w", name, enclave, err)
	}
	return crypto.NewKey(t, material)
}
