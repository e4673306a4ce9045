package state

import (
	"fmt"
	"strconv"

	"github.com/keep-kms/keep/internal/crypto"
)

// keyAAD binds sealed key material to the key version it belongs to: its
// enclave, name, version and type. Sealed material moved to another key,
// version or type does not unseal, even by someone who could rewrite a
// snapshot's MAC.
func keyAAD(enclave, name string, v uint32, t crypto.KeyType) []byte {
	return []byte("keep/key/v2/" + enclave + "/" + name + "/" + strconv.FormatUint(uint64(v), 10) + "/" + string(t))
}

// legacyKeyAAD is the associated data of key material sealed by earlier
// versions of Keep: enclave and name only. It is read from legacy log
// entries and format 1 snapshots and backups, and never written: the
// material is sealed again under keyAAD when it is applied (see reseal).
func legacyKeyAAD(enclave, name string) []byte {
	return []byte("keep/key/" + enclave + "/" + name)
}

// SealKey seals key material under the root key, for the KeyArgs of an
// entry that will make it version v of the key.
func (s *State) SealKey(enclave, name string, v uint32, k crypto.Key) ([]byte, error) {
	root, err := s.root()
	if err != nil {
		return nil, err
	}
	return root.Encrypt(0, k.Material(), keyAAD(enclave, name, v, k.Type()))
}

// root returns the root key that seals what a proposer puts into an entry.
func (s *State) root() (crypto.Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.clusterID == "" {
		return crypto.Key{}, ErrNotInitialized
	}
	return s.rootKey, nil
}

// NextVersion returns the version number that a new version of a key gets:
// 1 for a key that does not exist. A proposer seals the material of a new
// version for it; if another version is added first, the entry is refused
// with ErrVersionConflict and the proposer seals again.
func (s *State) NextVersion(enclave, name string) uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e, ok := s.enclaves.get(enclave); ok {
		if k, ok := e.keys.get(name); ok {
			return k.next
		}
	}
	return 1
}

// unsealKey is SealKey's reverse; the caller holds s.mu.
func (s *State) unsealKey(enclave, name string, v uint32, t crypto.KeyType, sealed []byte) (crypto.Key, error) {
	return s.unseal(enclave, name, v, t, sealed, keyAAD(enclave, name, v, t))
}

// unsealLegacyKey unseals material sealed under legacyKeyAAD and seals it
// again under keyAAD, so that what the state holds (and later snapshots)
// binds version and type. It returns the key and its new sealed form. This
// runs when a legacy entry or snapshot is applied, never per request.
func (s *State) unsealLegacyKey(enclave, name string, v uint32, t crypto.KeyType, sealed []byte) (crypto.Key, []byte, error) {
	k, err := s.unseal(enclave, name, v, t, sealed, legacyKeyAAD(enclave, name))
	if err != nil {
		return crypto.Key{}, nil, err
	}
	resealed, err := s.rootKey.Encrypt(0, k.Material(), keyAAD(enclave, name, v, t))
	if err != nil {
		return crypto.Key{}, nil, fmt.Errorf("failed to seal key %q of enclave %q again: %w", name, enclave, err)
	}
	return k, resealed, nil
}

func (s *State) unseal(enclave, name string, v uint32, t crypto.KeyType, sealed, aad []byte) (crypto.Key, error) {
	material, err := s.rootKey.Decrypt(sealed, aad)
	if err != nil {
		return crypto.Key{}, fmt.Errorf("failed to unseal version %d of key %q of enclave %q: %w", v, name, enclave, err)
	}
	defer clear(material)
	return crypto.NewKey(t, material)
}
