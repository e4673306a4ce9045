package hsm

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/keep-kms/keep/internal/crypto"
)

// Keyring is the set of HSMs a node is configured with, in the order of its
// configuration, and the cluster's root key once one of them has unsealed
// it. It unseals sealed root keys for the state machine (state.Unsealer).
//
// A node may meet a root key sealed only by HSMs it does not have: the
// init entry of a cluster created on the soft HSM, replayed on a node that
// has moved to a PKCS#11 token. It then answers with the root key it
// unsealed at start (from kms.db, or from the seals the leader sent when
// the node joined). That is sound because every caller verifies a MAC
// under the key it gets: a record written under another root key fails
// that check as if the HSM had refused it.
type Keyring struct {
	hsms []HSM

	mu    sync.Mutex
	root  []byte // the cluster's root key; nil until unsealed
	seals []Seal // the cluster's seals, as last opened or adopted
}

// NewKeyring returns the keyring of hsms; it owns them and closes them on
// Close.
func NewKeyring(hsms ...HSM) *Keyring { return &Keyring{hsms: hsms} }

// HSMs returns the node's HSMs in the order of its configuration.
func (k *Keyring) HSMs() []HSM { return k.hsms }

// Names returns the names of the node's HSMs, in order.
func (k *Keyring) Names() []string {
	names := make([]string, len(k.hsms))
	for i, h := range k.hsms {
		names[i] = h.Name()
	}
	return names
}

// Get returns the node's HSM called name.
func (k *Keyring) Get(name string) (HSM, bool) {
	for _, h := range k.hsms {
		if h.Name() == name {
			return h, true
		}
	}
	return nil, false
}

// ErrNoSeal is returned when none of a node's HSMs unseals a root key.
var ErrNoSeal = errors.New("none of this node's HSMs unseals the root encryption key")

// Open unseals the root key from sealed (an encoded list of seals, or a
// sealed root key written before there were several) with the first of
// the node's HSMs that has a seal in it, and keeps it as the cluster's root
// key. It returns that HSM. It never falls back on a known root key: at
// start, this is the check that the node has one of the cluster's HSMs.
func (k *Keyring) Open(ctx context.Context, sealed []byte) (HSM, error) {
	root, h, err := k.unseal(ctx, sealed, nil)
	if err != nil {
		return nil, err
	}
	k.Adopt(sealed, root)
	clear(root)
	return h, nil
}

// Try unseals the root key from sealed as Open does, but does not keep
// it: the caller decides first whether sealed is the cluster's.
func (k *Keyring) Try(ctx context.Context, sealed []byte) ([]byte, HSM, error) {
	return k.unseal(ctx, sealed, nil)
}

// MAC returns RootMAC of the cluster's root key, which the keyring holds.
func (k *Keyring) MAC(info string, parts ...[]byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.root) == 0 {
		return nil, errors.New("hsm: the root key is not unsealed yet")
	}
	return RootMAC(k.root, info, parts...)
}

// RootMAC is the HMAC-SHA256 of parts (each length-prefixed, so that no
// two lists of parts read alike) under the key HKDF-SHA256 derives from
// root with info: what proves that a message comes from a holder of the
// root key.
func RootMAC(root []byte, info string, parts ...[]byte) ([]byte, error) {
	key, err := hkdf.Key(sha256.New, root, nil, info, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("hsm: failed to derive a MAC key: %w", err)
	}
	defer clear(key)
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(binary.BigEndian.AppendUint64(nil, uint64(len(p))))
		m.Write(p)
	}
	return m.Sum(nil), nil
}

// Adopt makes root the cluster's root key and sealed (which seals it) its
// seals, as the node learnt them: from kms.db at start, when it created
// the cluster or joined one, or when the cluster's HSMs changed.
func (k *Keyring) Adopt(sealed, root []byte) {
	seals, err := DecodeSeals(sealed)
	if err != nil {
		seals = nil // the caller unsealed it, so it decodes
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.root)
	k.root, k.seals = append([]byte(nil), root...), seals
}

// IsNode reports whether id is the node identity of one of the node's
// HSMs (given as own) or of one of the cluster's seals: a peer that
// presents it holds one of the cluster's HSMs. The seals are those of the
// node's last view of the cluster, which it has before raft replays its
// log, so that a node that moved to another of the cluster's HSMs still
// knows its peers on the first.
func (k *Keyring) IsNode(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.ContainsFunc(k.seals, func(s Seal) bool { return s.Node != "" && s.Node == id })
}

// unseal unseals sealed with the first of the node's HSMs that can; HSMs
// are tried in the node's order, on the seal of their own name first.
// With among, only the seals of those HSMs are tried.
func (k *Keyring) unseal(ctx context.Context, sealed []byte, among []string) ([]byte, HSM, error) {
	seals, err := DecodeSeals(sealed)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", crypto.ErrDecrypt, err)
	}
	if among != nil {
		seals = slices.DeleteFunc(seals, func(s Seal) bool { return !slices.Contains(among, s.HSM) })
	}
	var failures []string
	for _, h := range k.hsms {
		for _, s := range ordered(seals, h.Name()) {
			plain, err := h.Unseal(ctx, s.Sealed)
			if err == nil {
				if err := VerifySeals(sealed, plain); err != nil {
					clear(plain)
					return nil, nil, err
				}
				return plain, h, nil
			}
			switch {
			case !errors.Is(err, crypto.ErrDecrypt):
				// The HSM itself failed (a token gone, a session lost):
				// worth telling apart from a key that does not fit.
				failures = append(failures, fmt.Sprintf("HSM %s failed: %v", h.Name(), err))
			case s.HSM == h.Name():
				failures = append(failures, fmt.Sprintf("HSM %s holds another key than the one that sealed it", h.Name()))
			}
		}
	}
	msg := fmt.Sprintf("%v (%v): the cluster's HSMs are %s, this node's are %s", ErrNoSeal, crypto.ErrDecrypt,
		strings.Join(Names(seals), ", "), strings.Join(k.Names(), ", "))
	if len(failures) > 0 {
		msg += "; " + strings.Join(failures, "; ")
	}
	return nil, nil, &noSealError{msg: msg}
}

// noSealError is ErrNoSeal with the names of the HSMs involved; it is also
// crypto.ErrDecrypt, as an HSM's Unseal must be.
type noSealError struct{ msg string }

func (e *noSealError) Error() string { return e.msg }

func (e *noSealError) Is(target error) bool {
	return target == ErrNoSeal || target == crypto.ErrDecrypt
}

// ordered returns seals with the one named name first: the HSM's own seal
// is the one it most likely unseals.
func ordered(seals []Seal, name string) []Seal {
	out := make([]Seal, 0, len(seals))
	for _, s := range seals {
		if s.HSM == name {
			out = append(out, s)
		}
	}
	for _, s := range seals {
		if s.HSM != name {
			out = append(out, s)
		}
	}
	return out
}

// Unseal returns the root key sealed in sealed, unsealed by one of the
// node's HSMs or, when none has a seal in it, the cluster's root key that
// the node already holds, for the caller's MAC check to accept or refuse.
func (k *Keyring) Unseal(ctx context.Context, sealed []byte) ([]byte, error) {
	return k.UnsealAmong(ctx, sealed, nil)
}

// UnsealAmong is Unseal that tries only the seals of the HSMs named among
// (nil: all): every node of a cluster holds one of the cluster's HSMs, so
// a restore that unseals a backup with these alone decides alike on every
// node, whatever other HSMs a node has.
func (k *Keyring) UnsealAmong(ctx context.Context, sealed []byte, among []string) ([]byte, error) {
	plain, _, err := k.unseal(ctx, sealed, among)
	if err == nil || !errors.Is(err, ErrNoSeal) {
		return plain, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.root != nil {
		return append([]byte(nil), k.root...), nil
	}
	return nil, err
}

// Seal seals root with every HSM of the node, in order, and returns the
// seals with the identities each HSM derives.
func (k *Keyring) Seal(ctx context.Context, root []byte) ([]Seal, error) {
	seals := make([]Seal, 0, len(k.hsms))
	for _, h := range k.hsms {
		s, err := NewSeal(ctx, h, root)
		if err != nil {
			return nil, err
		}
		seals = append(seals, s)
	}
	return seals, nil
}

// SealRoot seals the cluster's root key, which the keyring holds once it
// has unsealed it, with h.
func (k *Keyring) SealRoot(ctx context.Context, h HSM) (Seal, error) {
	k.mu.Lock()
	root := append([]byte(nil), k.root...)
	k.mu.Unlock()
	defer clear(root)
	if len(root) == 0 {
		return Seal{}, errors.New("hsm: the root key is not unsealed yet")
	}
	return NewSeal(ctx, h, root)
}

// NewSeal seals root with h and records the identities h derives.
func NewSeal(ctx context.Context, h HSM, root []byte) (Seal, error) {
	sealed, err := h.Seal(ctx, root)
	if err != nil {
		return Seal{}, fmt.Errorf("failed to seal root encryption key with HSM %s: %w", h.Name(), err)
	}
	return Identify(ctx, h, sealed)
}

// Identify returns the seal sealed of h with the identities h derives.
func Identify(ctx context.Context, h HSM, sealed []byte) (Seal, error) {
	node, err := h.PrivateKey(ctx, NodeKeySeed)
	if err != nil {
		return Seal{}, fmt.Errorf("HSM %s: failed to derive node key: %w", h.Name(), err)
	}
	rootKey, err := RootAPIKey(ctx, h)
	if err != nil {
		return Seal{}, fmt.Errorf("HSM %s: failed to derive root API key: %w", h.Name(), err)
	}
	return Seal{HSM: h.Name(), Sealed: sealed, Node: node.Identity().String(), Root: rootKey.Identity().String()}, nil
}

// Close closes every HSM of the node and forgets the root key.
func (k *Keyring) Close() error {
	k.mu.Lock()
	clear(k.root)
	k.root = nil
	k.mu.Unlock()
	var errs []error
	for _, h := range k.hsms {
		errs = append(errs, h.Close())
	}
	return errors.Join(errs...)
}
