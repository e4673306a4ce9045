package state

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/kesformat"
)

// KESArgs mark a key version imported from a KES keystore: what Keep needs
// beside the material to go on reading what KES wrote with it. They travel
// in the KeyArgs of the entry that imports the key and in snapshots, and
// are absent for every other key (and in all data of earlier versions).
type KESArgs struct {
	// Format is the KES key file format the key was read from
	// (kesformat.Format): a record of where the key came from.
	Format string `json:"format"`
	// Implicit is set when the key file named no algorithm
	// (kesformat.Key.AlgorithmImplicit): the KES versions that wrote such
	// keys chose the AEAD per ciphertext.
	Implicit bool `json:"implicit,omitempty"`
	// SealedHMAC is KES's HMAC key, sealed under the root key for this
	// version (kesHMACAAD); nil when the key has none (JSON key files).
	SealedHMAC []byte `json:"sealed_hmac,omitempty"`
	// CreatedAt and CreatedBy are the key's creation as KES recorded it;
	// zero when the file did not say, and then the import's time and
	// identity are the key's.
	CreatedAt time.Time `json:"created_at,omitzero"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// KESKey is the part of a key version imported from KES that reads what KES
// wrote: its ciphertexts in every encoding and its HMACs. It is built once,
// when the version is applied or restored, and safe for concurrent use.
type KESKey struct {
	cipher  *kesformat.Cipher
	hmacKey []byte   // nil if the key has none
	args    *KESArgs // what the version was imported with, for snapshots
}

// argsOf returns the KESArgs k was built from, nil for no KES key.
func (k *KESKey) argsOf() *KESArgs {
	if k == nil {
		return nil
	}
	return k.args
}

// Decrypt returns the plaintext of a ciphertext KES made with this key,
// associatedData being KES's context; every failure is crypto.ErrDecrypt.
func (k *KESKey) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	return k.cipher.Decrypt(ciphertext, associatedData)
}

// HMAC returns KES's HMAC-SHA256 of message, or kesformat.ErrNoHMACKey for
// a key KES had no HMAC key for.
func (k *KESKey) HMAC(message []byte) ([]byte, error) {
	if k.hmacKey == nil {
		return nil, kesformat.ErrNoHMACKey
	}
	return kesformat.HMAC(k.hmacKey, message)
}

// kesHMACAAD binds a sealed KES HMAC key to its key version, apart from the
// version's material (keyAAD), so that neither unseals as the other.
func kesHMACAAD(enclave, name string, v uint32, t crypto.KeyType) []byte {
	return append(keyAAD(enclave, name, v, t), "/kes-hmac"...)
}

// SealKESHMAC seals the HMAC key of a KES key under the root key, for the
// KESArgs of an entry that will make it version v of the key.
func (s *State) SealKESHMAC(enclave, name string, v uint32, t crypto.KeyType, hmacKey []byte) ([]byte, error) {
	if len(hmacKey) != kesformat.KeySize {
		return nil, fmt.Errorf("%w: a KES HMAC key has %d bytes, not %d", ErrInvalidArgument, kesformat.KeySize, len(hmacKey))
	}
	root, err := s.root()
	if err != nil {
		return nil, err
	}
	return root.Encrypt(0, hmacKey, kesHMACAAD(enclave, name, v, t))
}

// errKESArgs is wrapped by every refusal of KESArgs that cannot be right.
var errKESArgs = errors.New("invalid KES key")

// checkKESArgs refuses KES arguments that no import makes: KES keys are
// imported as new keys, never added as a version, and a key without an
// algorithm of its own is AES256 as in KES.
func checkKESArgs(a *KeyArgs) error {
	switch {
	case a.KES == nil:
		return nil
	case a.AddVersion || a.Version == 0:
		return fmt.Errorf("%w: %w: a KES key must be a new key's first version", ErrInvalidArgument, errKESArgs)
	case !a.Imported:
		return fmt.Errorf("%w: %w: a KES key is imported", ErrInvalidArgument, errKESArgs)
	case a.KES.Implicit && a.Type != crypto.AES256:
		return fmt.Errorf("%w: %w: a KES key without algorithm is AES256", ErrInvalidArgument, errKESArgs)
	}
	return nil
}

// openKES builds the KESKey of a version with material k; the caller holds
// s.mu (or owns s, when restoring).
func (s *State) openKES(enclave, name string, v uint32, k crypto.Key, a *KESArgs) (*KESKey, error) {
	if a == nil {
		return nil, nil
	}
	material := k.Material()
	defer clear(material)
	var (
		c   *kesformat.Cipher
		err error
	)
	if a.Implicit {
		c, err = kesformat.NewImplicitCipher(material)
	} else {
		c, err = kesformat.NewCipher(k.Type(), material)
	}
	if err != nil {
		return nil, fmt.Errorf("version %d of key %q of enclave %q: %w", v, name, enclave, err)
	}
	kk := &KESKey{cipher: c, args: a}
	if a.SealedHMAC != nil {
		hk, err := s.rootKey.Decrypt(a.SealedHMAC, kesHMACAAD(enclave, name, v, k.Type()))
		if err != nil {
			return nil, fmt.Errorf("failed to unseal the KES HMAC key of version %d of key %q of enclave %q: %w", v, name, enclave, err)
		}
		if len(hk) != kesformat.KeySize {
			clear(hk)
			return nil, fmt.Errorf("%w: %w: the HMAC key of key %q of enclave %q has %d bytes", ErrInvalidArgument, errKESArgs, name, enclave, len(hk))
		}
		kk.hmacKey = hk
	}
	return kk, nil
}

// created returns when and by whom a version was created: as KES recorded
// it for an imported KES key that says, else the entry's.
func (a *KESArgs) created(at time.Time, by string) (time.Time, string) {
	if a == nil {
		return at, by
	}
	if !a.CreatedAt.IsZero() {
		at = a.CreatedAt
	}
	if a.CreatedBy != "" {
		by = a.CreatedBy
	}
	return at, by
}

// MatchesKES reports whether v was imported from KES with exactly this
// material, of this type, and this HMAC key (nil for none): whether
// importing the same KES key again would change nothing. It compares in
// constant time.
func (v KeyVersion) MatchesKES(t crypto.KeyType, material, hmacKey []byte) bool {
	if v.KES == nil {
		return false
	}
	have := v.Key.Material()
	defer clear(have)
	return v.Key.Type() == t &&
		subtle.ConstantTimeCompare(have, material) == 1 &&
		(v.KES.hmacKey == nil) == (hmacKey == nil) &&
		subtle.ConstantTimeCompare(v.KES.hmacKey, hmacKey) == 1
}

// KESVersion returns the version of a key that was imported from KES, and
// false when the key has none (or does not exist).
func (s *State) KESVersion(enclave, name string) (KeyVersion, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if k, err := s.keyRing(enclave, name); err == nil {
		for _, v := range k.versions {
			if v.kes != nil {
				// Unsealed when it was applied or restored: newVersion
				// needed its material for KES.
				var kv KeyVersion
				err := s.serving(enclave, name, v, &kv)
				return kv, err == nil
			}
		}
	}
	return KeyVersion{}, false
}
