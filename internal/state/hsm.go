package state

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"github.com/keep-kms/keep/internal/crypto"

	"github.com/keep-kms/keep/internal/hsm"
)

// OpHSM adds seals of the root key by HSMs, or removes one (Entry.HSM).
// Its name is stored in the raft log: never rename it.
const OpHSM Op = "cluster.hsm"

// Errors of the cluster's HSMs; the API layers send their whole text.
var (
	// ErrHSMExists refuses to add an HSM that has a seal already, unless
	// the write overwrites it.
	ErrHSMExists = errors.New("HSM already seals the root key")
	// ErrHSMNotFound names an HSM that has no seal of the root key.
	ErrHSMNotFound = errors.New("HSM does not seal the root key")
	// ErrHSMInUse refuses to remove the last HSM, or one a node uses.
	ErrHSMInUse = errors.New("HSM is in use")
)

// HSMArgs add seals (Add: each the root key sealed by one HSM, with the
// identities it derives) or remove one HSM's seal (Remove).
type HSMArgs struct {
	Add       []hsm.Seal `json:"add,omitempty"`
	Overwrite bool       `json:"overwrite,omitempty"` // replace a seal the HSM has
	Remove    string     `json:"remove,omitempty"`
}

// Seals returns the seals of the cluster's root key, one per HSM.
func (s *State) Seals() []hsm.Seal {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.seals)
}

// SealedRootKey returns the cluster's root key as it is stored: the
// encoded seals of every HSM (or, for a cluster created before there could
// be several, the one HSM ciphertext). A node that joins is sent it.
func (s *State) SealedRootKey() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return bytes.Clone(s.sealedRootKey)
}

// OnSeals registers f to be called whenever the cluster's sealed root key
// changes (init, a change of HSMs, a restore), with the new sealed root key
// and the root key, on the goroutine that applies the change and with the
// state locked: f must not call into the State, nor keep root.
func (s *State) OnSeals(f func(sealed, root []byte)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onSeals = f
}

// adoptSealedRootKey makes sealed the cluster's sealed root key, reads its
// seals and tells OnSeals; the caller holds s.mu and has unsealed sealed
// into s.rootKey.
func (s *State) adoptSealedRootKey(sealed []byte) error {
	seals, err := hsm.DecodeSeals(sealed)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	s.sealedRootKey, s.seals = sealed, seals
	s.storeHSMRoots()
	if s.onSeals != nil && len(sealed) > 0 {
		root := s.rootKey.Material()
		s.onSeals(sealed, root)
		clear(root)
	}
	return nil
}

func (s *State) applyHSM(e *Entry) error {
	a := e.HSM
	if a == nil || (len(a.Add) == 0) == (a.Remove == "") {
		return fmt.Errorf("%w: an HSM entry adds seals or removes one", ErrInvalidArgument)
	}
	seals := slices.Clone(s.seals)
	for _, add := range a.Add {
		i := slices.IndexFunc(seals, func(x hsm.Seal) bool { return x.HSM == add.HSM })
		switch {
		case i < 0:
			seals = append(seals, add)
		case a.Overwrite:
			seals[i] = add
		default:
			return fmt.Errorf("%w: %s; add it with overwrite (keep add-hsm --overwrite) to seal the root key again", ErrHSMExists, add.HSM)
		}
	}
	if a.Remove != "" {
		i := slices.IndexFunc(seals, func(x hsm.Seal) bool { return x.HSM == a.Remove })
		if i < 0 {
			return fmt.Errorf("%w: %s; the cluster's HSMs are %v", ErrHSMNotFound, a.Remove, hsm.Names(seals))
		}
		if len(seals) == 1 {
			return fmt.Errorf("%w: %s is the cluster's last HSM: without it, no node could unseal the root key", ErrHSMInUse, a.Remove)
		}
		seals = slices.Delete(seals, i, i+1)
	}
	root := s.rootKey.Material()
	sealed, err := hsm.EncodeSeals(seals, root)
	clear(root)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return s.adoptSealedRootKey(sealed)
}

// IsHSMRoot reports whether id is the root API key identity of one of the
// cluster's HSMs. It takes no lock: it is asked on every request.
func (s *State) IsHSMRoot(id string) bool {
	roots := s.hsmRoots.Load()
	return id != "" && roots != nil && slices.Contains(*roots, id)
}

// storeHSMRoots publishes the root API key identities of s.seals for
// IsHSMRoot; the caller holds s.mu.
func (s *State) storeHSMRoots() {
	roots := make([]string, 0, len(s.seals))
	for _, seal := range s.seals {
		if seal.Root != "" {
			roots = append(roots, seal.Root)
		}
	}
	s.hsmRoots.Store(&roots)
}

// IsRootKey reports whether material is the cluster's root key.
func (s *State) IsRootKey(material []byte) bool {
	s.mu.RLock()
	root := s.rootKey.Material()
	s.mu.RUnlock()
	defer clear(root)
	return len(root) > 0 && subtle.ConstantTimeCompare(root, material) == 1
}

// sameKey reports whether a and b hold the same key material, in constant
// time.
func sameKey(a, b crypto.Key) bool {
	ma, mb := a.Material(), b.Material()
	defer clear(ma)
	defer clear(mb)
	return subtle.ConstantTimeCompare(ma, mb) == 1
}
