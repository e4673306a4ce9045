package state

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/usage"
)

// sealedKeySize is the length of all sealed key material: SealKey's
// encryption of crypto.KeySize bytes.
const sealedKeySize = crypto.KeySize + crypto.Overhead

// ErrUnseal is the error of a key version whose material, sealed in the
// state, does not unseal when it is first used. An authentic snapshot or
// log entry cannot hold such material without the root key, so this is a
// server failure, not the client's: the API layers answer 500 and log it.
// It never wraps crypto.ErrDecrypt, which tells a client its ciphertext
// is invalid.
var ErrUnseal = errors.New("key material does not unseal")

// firstUses serialize the first uses of versions, by the version: many
// requests that come at once for a key just restored unseal it once, and
// all get the same key. Holding one costs the others nothing but a
// version that hashes alike, for the time of one unseal.
var (
	firstUses    [64]sync.Mutex
	firstUseSeed = maphash.MakeSeed()
)

// serving sets *kv to v, a version of key name, with its material and its
// usage counter, unsealing the material on v's first use (and keeping
// it); the caller holds s.mu, read locked at least, and v is in the state
// (see version). It writes into the caller's KeyVersion: the hot path
// copies it once.
func (s *State) serving(enclave, name string, v *version, kv *KeyVersion) error {
	u := v.use.Load()
	if u == nil || u.key == (crypto.Key{}) {
		var err error
		if u, err = s.firstUse(enclave, name, v); err != nil {
			return err
		}
	}
	*kv = KeyVersion{Name: name, versionInfo: v.versionInfo, Key: u.key, KES: v.kes, Usage: u.counter}
	return nil
}

// firstUse unseals the material of v and keeps it, with v's counter (or a
// new one), unless another first use did so meanwhile. On failure v keeps
// nothing: the next use tries again.
func (s *State) firstUse(enclave, name string, v *version) (*inUse, error) {
	mu := &firstUses[maphash.Comparable(firstUseSeed, v)%uint64(len(firstUses))]
	mu.Lock()
	defer mu.Unlock()
	u := v.use.Load()
	if u != nil && u.key != (crypto.Key{}) {
		return u, nil
	}
	k, err := s.unsealKey(enclave, name, v.Version, v.Type(), v.sealed[:])
	if err != nil {
		// %v, not %w: the cause is crypto.ErrDecrypt, which is the
		// client's invalid ciphertext, and this is not.
		return nil, fmt.Errorf("%w: version %d of key %q of enclave %q: %v", ErrUnseal, v.Version, name, enclave, err)
	}
	next := &inUse{key: k, counter: usage.NewCounter()}
	if u != nil {
		next.counter = u.counter
	}
	v.use.Store(next)
	return next, nil
}

// newVersion returns version n of the key name of enclave, of type t, its
// material sealed as sealed, and imported from KES with kes (nil if not).
// The material is unsealed on first use (State.serving) but for two kinds
// of version, whose material is unsealed now:
//
//   - material sealed by earlier versions of Keep (legacy, under
//     legacyKeyAAD), which is sealed again under keyAAD: it comes from an
//     unauthenticated snapshot or log entry of a data directory being
//     upgraded, and unsealing it is what checks it;
//   - a key imported from KES, whose KESKey is built from the material.
//
// The caller holds s.mu, or owns s.
func (s *State) newVersion(enclave, name string, n uint32, t crypto.KeyType, sealed []byte, kes *KESArgs, legacy bool) (*version, error) {
	v := &version{versionInfo: versionInfo{Version: n, typ: t.Code()}}
	if v.typ == 0 {
		return nil, fmt.Errorf("%w: version %d of key %q of enclave %q: %w %q", ErrInvalidArgument, n, name, enclave, crypto.ErrInvalidKeyType, string(t))
	}
	var (
		material crypto.Key
		err      error
	)
	switch {
	case legacy:
		material, sealed, err = s.unsealLegacyKey(enclave, name, n, t, sealed)
	case kes != nil:
		material, err = s.unsealKey(enclave, name, n, t, sealed)
	}
	if err != nil {
		return nil, err
	}
	if len(sealed) != sealedKeySize {
		return nil, fmt.Errorf("%w: version %d of key %q of enclave %q: sealed material of %d bytes, not %d", ErrInvalidArgument, n, name, enclave, len(sealed), sealedKeySize)
	}
	copy(v.sealed[:], sealed)
	if material != (crypto.Key{}) {
		if v.kes, err = s.openKES(enclave, name, n, material, kes); err != nil {
			return nil, err
		}
		v.use.Store(&inUse{key: material, counter: usage.NewCounter()})
	}
	return v, nil
}
