package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/state"
)

// Data key lengths: MinIO asks for 32 bytes; 0 means that default.
const (
	DefaultDEKLength = 32
	MaxDEKLength     = 1024
)

// CreateKey creates a key of type keyType ("" for AES256), or with
// addVersion adds a new version to an existing key: a rotation, which
// keeps the key's type unless keyType names another.
func (s *Service) CreateKey(ctx context.Context, c Caller, enclave, name, keyType string, addVersion bool) error {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.KeyCreate, name); err != nil {
		return err
	}
	t, err := parseKeyType(keyType)
	if err != nil {
		return err
	}
	if addVersion && keyType == "" {
		// A listing, which unseals nothing: only the type is needed.
		if versions, err := s.state.KeyVersions(enclave, name); err == nil {
			t = versions[len(versions)-1].Type()
		}
	}
	k, err := crypto.GenerateKey(t, nil)
	if err != nil {
		return err
	}
	args := &state.KeyArgs{Type: t, AddVersion: addVersion}
	if !addVersion {
		args.RotateEvery = s.durationSetting(SettingRotateEvery, 0)
	}
	return s.createKey(ctx, c, enclave, name, k, args, nil)
}

// ImportKey creates a key from the given material.
func (s *Service) ImportKey(ctx context.Context, c Caller, enclave, name, keyType string, material []byte) error {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.KeyImport, name); err != nil {
		return err
	}
	t, err := parseKeyType(keyType)
	if err != nil {
		return err
	}
	k, err := crypto.NewKey(t, material)
	if err != nil {
		return fmt.Errorf("%w: imported key must be %d bytes", state.ErrInvalidArgument, crypto.KeySize)
	}
	return s.createKey(ctx, c, enclave, name, k, &state.KeyArgs{Type: t, Imported: true}, nil)
}

func parseKeyType(keyType string) (crypto.KeyType, error) {
	t, err := crypto.ParseKeyType(keyType)
	if err != nil {
		return "", fmt.Errorf("%w: key type %q: use AES256 or ChaCha20", state.ErrInvalidArgument, keyType)
	}
	return t, nil
}

// versionAttempts bounds how often a new key version is sealed again
// because another version was added first.
const versionAttempts = 3

// createKey seals the material under the root key, for the version number
// it will get, before it enters the log. sealMore, if not nil, seals what
// else the entry carries for that version.
func (s *Service) createKey(ctx context.Context, c Caller, enclave, name string, k crypto.Key, args *state.KeyArgs, sealMore func(*state.KeyArgs) error) error {
	if err := state.ValidKeyName(name); err != nil {
		return err
	}
	var err error
	for range versionAttempts {
		args.Version = s.state.NextVersion(enclave, name)
		if args.Sealed, err = s.state.SealKey(enclave, name, args.Version, k); err != nil {
			return err
		}
		if sealMore != nil {
			if err = sealMore(args); err != nil {
				return err
			}
		}
		err = s.apply(ctx, c, &state.Entry{Op: state.OpCreateKey, Enclave: enclave, Name: name, Key: args})
		if !errors.Is(err, state.ErrVersionConflict) {
			return err
		}
	}
	return err
}

// DeleteKey deletes one version of a key (0: the latest) or, with all, the
// whole key, after the cluster's deletion window (KEY:DELETE of the MinIO
// KMS API, the KES API's delete): see ScheduleKeyDeletion.
func (s *Service) DeleteKey(ctx context.Context, c Caller, enclave, name string, version uint32, all bool) error {
	// These APIs have no way to say "force": their deletions are forced,
	// as before the rule, and the deletion window protects them.
	_, err := s.ScheduleKeyDeletion(ctx, c, enclave, name, version, all, nil, true)
	return err
}

// KeyStatus describes a version of a key (0: the latest).
func (s *Service) KeyStatus(c Caller, enclave, name string, version uint32) (state.KeyVersion, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.KeyStatus, name); err != nil {
		return state.KeyVersion{}, err
	}
	return s.state.Key(enclave, name, version)
}

// ListKeys returns a page of keys, each as its latest version.
func (s *Service) ListKeys(c Caller, enclave, prefix, continueAt string, limit int) ([]state.KeyVersion, string, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.KeyList, ""); err != nil {
		return nil, "", err
	}
	return s.state.Keys(enclave, prefix, continueAt, limit)
}

// KeyVersions lists every version of a key.
func (s *Service) KeyVersions(c Caller, enclave, name string) ([]state.KeyVersion, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.KeyListVersions, name); err != nil {
		return nil, err
	}
	return s.state.KeyVersions(enclave, name)
}

// Encrypt encrypts plaintext with a version of a key (0: the latest) and
// returns the version used and the ciphertext.
func (s *Service) Encrypt(c Caller, enclave, name string, version uint32, plaintext, associatedData []byte) (uint32, []byte, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.KeyEncrypt, name); err != nil {
		return 0, nil, err
	}
	kv, err := s.state.Key(enclave, name, version)
	if err != nil {
		return 0, nil, err
	}
	if err := kv.Serves(); err != nil {
		return 0, nil, err
	}
	ciphertext, err := kv.Key.Encrypt(kv.Version, plaintext, associatedData)
	if err != nil {
		return 0, nil, err
	}
	kv.Usage.Generated() // a new ciphertext depends on the version, as a data key does
	return kv.Version, ciphertext, nil
}

// GenerateKey returns a new data key of length bytes (0: 32), in plaintext
// and encrypted with a version of a key (0: the latest).
func (s *Service) GenerateKey(c Caller, enclave, name string, version uint32, associatedData []byte, length int) (uint32, []byte, []byte, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.KeyGenerate, name); err != nil {
		return 0, nil, nil, err
	}
	if length == 0 {
		length = DefaultDEKLength
	}
	if length < 0 || length > MaxDEKLength {
		return 0, nil, nil, fmt.Errorf("%w: data key length %d is not between 1 and %d", state.ErrInvalidArgument, length, MaxDEKLength)
	}
	kv, err := s.state.Key(enclave, name, version)
	if err != nil {
		return 0, nil, nil, err
	}
	if err := kv.Serves(); err != nil {
		return 0, nil, nil, err
	}
	dek, err := crypto.GenerateDEK(length)
	if err != nil {
		return 0, nil, nil, err
	}
	ciphertext, err := kv.Key.Encrypt(kv.Version, dek, associatedData)
	if err != nil {
		return 0, nil, nil, err
	}
	kv.Usage.Generated()
	return kv.Version, dek, ciphertext, nil
}

// Decrypt decrypts a ciphertext of Encrypt or GenerateKey. The key version
// comes from the ciphertext itself, so version 0 works for every version; a
// non-zero version must match it. A key imported from KES also decrypts
// every ciphertext KES made with it (version 0 or the imported version).
func (s *Service) Decrypt(c Caller, enclave, name string, version uint32, ciphertext, associatedData []byte) ([]byte, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.KeyDecrypt, name); err != nil {
		return nil, err
	}
	plaintext, err := s.decrypt(enclave, name, version, ciphertext, associatedData)
	if errors.Is(err, crypto.ErrDecrypt) {
		// Not a Keep ciphertext of this key. Asking only now keeps the
		// lookup off the path of Keep's own ciphertexts; a raw KES
		// ciphertext may even start like one of Keep's by chance.
		if kv, ok := s.state.KESVersion(enclave, name); ok && (version == 0 || version == kv.Version) {
			if err := kv.Serves(); err != nil {
				return nil, err
			}
			plaintext, err := kv.KES.Decrypt(ciphertext, associatedData)
			if err == nil {
				kv.Usage.Decrypted()
			}
			return plaintext, err
		}
	}
	return plaintext, err
}

// decrypt decrypts a Keep ciphertext with the key version its header names.
func (s *Service) decrypt(enclave, name string, version uint32, ciphertext, associatedData []byte) ([]byte, error) {
	v, err := crypto.CiphertextVersion(ciphertext)
	if err != nil {
		return nil, err
	}
	if version != 0 && version != v {
		return nil, crypto.ErrDecrypt
	}
	kv, err := s.state.Key(enclave, name, v)
	if errors.Is(err, state.ErrKeyNotFound) {
		// The key exists but this version is gone: the ciphertext can no
		// longer be decrypted, which is what the client needs to hear.
		if _, e := s.state.Key(enclave, name, 0); e == nil {
			return nil, crypto.ErrDecrypt
		}
	}
	if err != nil {
		return nil, err
	}
	if err := kv.Serves(); err != nil {
		return nil, err
	}
	plaintext, err := kv.Key.Decrypt(ciphertext, associatedData)
	if err != nil {
		return nil, err
	}
	kv.Usage.Decrypted()
	return plaintext, nil
}
