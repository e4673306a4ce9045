package hsm

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"unicode"
)

// A cluster's root encryption key is sealed once by each of its HSMs. Each
// such copy is a Seal; the list of them is what the init entry, kms.db,
// snapshots and backups hold where a single HSM ciphertext stood before.
// A node unseals the root key with whichever of its HSMs has a seal.

// Seal is the root key sealed by one HSM, with the public identities of the
// keys that HSM derives, so that nodes on other HSMs can recognise the
// nodes and the root API key of this one.
type Seal struct {
	HSM    string `json:"hsm"`            // the HSM's name
	Sealed []byte `json:"sealed"`         // the root key, sealed by it
	Node   string `json:"node,omitempty"` // identity (h1:…) of the node key it derives
	Root   string `json:"root,omitempty"` // identity (h1:…) of the root API key it derives
}

// LegacyName is the name of the only HSM of a cluster created before a
// cluster could have several: a soft HSM key from MINIO_KMS_HSM_KEY.
const LegacyName = "hsm:aes256"

// sealsMagic starts an encoded list of seals; a sealed root key that does
// not start with it is one HSM ciphertext of a cluster created before
// (LegacyName), which never starts with it. After it comes the JSON of
// sealList.
const sealsMagic = "KEEPSEALS1\n"

// sealList is an encoded list of seals: the seals and an HMAC-SHA256 of
// their JSON under a key derived from the root key they seal. kms.db holds
// a copy, read before anything else can vouch for it: the MAC keeps anyone
// who can write kms.db but lacks the root key from adding an HSM (and with
// it a node identity the node would trust) to the list.
type sealList struct {
	Seals []Seal `json:"seals"`
	MAC   []byte `json:"mac"`
}

// infoSealsMAC is the HKDF info of the MAC key of a list of seals.
const infoSealsMAC = "keep/mac/seals/v1"

// ErrSealsNotAuthentic is returned for a list of seals whose MAC does not
// match the root key one of them seals: it was changed by someone without
// the root key.
var ErrSealsNotAuthentic = errors.New("the list of HSM seals is not authentic: it was changed after it was written")

// Limits of an encoded list of seals, which comes from disk, from a peer
// or from a backup: a list must be small, or it is not one.
const (
	maxSeals      = 16
	maxSealedSize = 4 << 10
	maxNameLen    = 128
)

// ErrSeals marks an encoded list of seals that cannot be read.
var ErrSeals = errors.New("invalid list of HSM seals")

// EncodeSeals encodes seals of root for storing where a sealed root key is
// stored, authenticated under root.
func EncodeSeals(seals []Seal, root []byte) ([]byte, error) {
	if err := validSeals(seals); err != nil {
		return nil, err
	}
	mac, err := sealsMAC(seals, root)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(sealList{Seals: seals, MAC: mac})
	if err != nil {
		return nil, fmt.Errorf("hsm: failed to encode seals: %w", err)
	}
	return append([]byte(sealsMagic), data...), nil
}

// sealsMAC is the MAC of seals under root.
func sealsMAC(seals []Seal, root []byte) ([]byte, error) {
	if len(root) == 0 {
		return nil, errors.New("hsm: no root key to authenticate the seals")
	}
	key, err := hkdf.Key(sha256.New, root, nil, infoSealsMAC, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("hsm: failed to derive the MAC key of the seals: %w", err)
	}
	defer clear(key)
	data, err := json.Marshal(seals)
	if err != nil {
		return nil, fmt.Errorf("hsm: failed to encode seals: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil), nil
}

// VerifySeals checks that sealed, an encoded list of seals, was written by
// a holder of root, which one of its seals unsealed. A sealed root key of a
// cluster created before lists of seals is one ciphertext, which the HSM
// authenticated already.
func VerifySeals(sealed, root []byte) error {
	body, ok := bytes.CutPrefix(sealed, []byte(sealsMagic))
	if !ok {
		return nil
	}
	var list sealList
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("hsm: %w: %v", ErrSeals, err)
	}
	want, err := sealsMAC(list.Seals, root)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, list.MAC) {
		return ErrSealsNotAuthentic
	}
	return nil
}

// DecodeSeals decodes what EncodeSeals returned; a sealed root key written
// before seals existed is one seal of LegacyName.
func DecodeSeals(data []byte) ([]Seal, error) {
	body, ok := bytes.CutPrefix(data, []byte(sealsMagic))
	if !ok {
		if len(data) == 0 || len(data) > maxSealedSize {
			return nil, fmt.Errorf("hsm: %w: a sealed root key of %d bytes", ErrSeals, len(data))
		}
		return []Seal{{HSM: LegacyName, Sealed: bytes.Clone(data)}}, nil
	}
	if len(body) > maxSeals*(2*maxSealedSize+3*maxNameLen) {
		return nil, fmt.Errorf("hsm: %w: %d bytes", ErrSeals, len(body))
	}
	var list sealList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("hsm: %w: %v", ErrSeals, err)
	}
	if err := validSeals(list.Seals); err != nil {
		return nil, err
	}
	return list.Seals, nil
}

// validSeals checks a list of seals: between 1 and maxSeals, each named
// once and validly, each within the size limit.
func validSeals(seals []Seal) error {
	if len(seals) == 0 || len(seals) > maxSeals {
		return fmt.Errorf("hsm: %w: %d seals, want 1 to %d", ErrSeals, len(seals), maxSeals)
	}
	seen := map[string]bool{}
	for _, s := range seals {
		if err := ValidName(s.HSM); err != nil {
			return fmt.Errorf("hsm: %w: %w", ErrSeals, err)
		}
		if seen[s.HSM] {
			return fmt.Errorf("hsm: %w: HSM %q has two seals", ErrSeals, s.HSM)
		}
		seen[s.HSM] = true
		if len(s.Sealed) == 0 || len(s.Sealed) > maxSealedSize {
			return fmt.Errorf("hsm: %w: the seal of HSM %q has %d bytes", ErrSeals, s.HSM, len(s.Sealed))
		}
		if len(s.Node) > maxNameLen || len(s.Root) > maxNameLen {
			return fmt.Errorf("hsm: %w: the identities of HSM %q are too long", ErrSeals, s.HSM)
		}
	}
	return nil
}

// ValidName reports whether name can name an HSM: 1 to 128 printable
// characters without spaces, so that it reads unambiguously in lists and
// logs.
func ValidName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("an HSM name must have 1 to %d characters", maxNameLen)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("HSM name %q: only printable characters without spaces", name)
		}
	}
	return nil
}

// Names returns the names of seals, in order.
func Names(seals []Seal) []string {
	names := make([]string, len(seals))
	for i, s := range seals {
		names[i] = s.HSM
	}
	return names
}
