package state

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keep-kms/keep/internal/crypto"
)

// ErrNotAuthentic is returned for a log entry, snapshot or backup whose MAC
// does not match its contents: it was changed after it was written, or it
// was never written by a holder of the cluster's root key. It is refused,
// never applied.
var ErrNotAuthentic = errors.New("not authentic")

// The HKDF info strings of the MAC keys derived from the root key: one per
// use, so that a MAC of one kind of record never verifies another kind.
const (
	infoEntryMAC    = "keep/mac/log-entry/v1"
	infoSnapshotMAC = "keep/mac/snapshot/v1"
	infoBackupMAC   = "keep/mac/backup/v1"
)

// macSize is the size of an HMAC-SHA256.
const macSize = sha256.Size

// macKeys are the MAC keys of a root key. They are derived once, when the
// state adopts a root key, so that a write pays for one HMAC only.
type macKeys struct {
	entry, snapshot, backup []byte
}

// deriveMACKeys derives the MAC keys of root with HKDF-SHA256.
func deriveMACKeys(root crypto.Key) (macKeys, error) {
	material := root.Material()
	defer clear(material)
	var (
		m   macKeys
		err error
	)
	for _, k := range []struct {
		dst  *[]byte
		info string
	}{{&m.entry, infoEntryMAC}, {&m.snapshot, infoSnapshotMAC}, {&m.backup, infoBackupMAC}} {
		if *k.dst, err = hkdf.Key(sha256.New, material, nil, k.info, macSize); err != nil {
			return macKeys{}, fmt.Errorf("failed to derive MAC key: %w", err)
		}
	}
	return m, nil
}

// unsealRoot unseals a root key with the HSM and derives its MAC keys.
func unsealRoot(u Unsealer, sealed []byte) (crypto.Key, macKeys, error) {
	if u == nil {
		return crypto.Key{}, macKeys{}, errors.New("failed to unseal root encryption key: no HSM")
	}
	plain, err := u.Unseal(context.Background(), sealed)
	if err != nil {
		return crypto.Key{}, macKeys{}, fmt.Errorf("failed to unseal root encryption key with HSM: %w", err)
	}
	root, err := crypto.NewKey(crypto.AES256, plain)
	clear(plain)
	if err != nil {
		return crypto.Key{}, macKeys{}, fmt.Errorf("invalid root encryption key: %w", err)
	}
	macs, err := deriveMACKeys(root)
	if err != nil {
		return crypto.Key{}, macKeys{}, err
	}
	return root, macs, nil
}

// An authenticated log entry is the JSON of the Entry with one more member
// at its end, "mac": the base64 HMAC-SHA256 of the JSON without it (the
// bytes before entryMACPrefix, then "}"). Decoders that do not know the
// member ignore it, so nodes of the previous version still read entries of
// this one. The MAC key is the entry MAC key of the cluster's root key; an
// init entry's is that of the root key it carries (see entryMACKey).
const entryMACPrefix = `,"mac":"`

// entryMACSuffixLen is the length of `,"mac":"<base64 MAC>"}`.
var entryMACSuffixLen = len(entryMACPrefix) + base64.StdEncoding.EncodedLen(macSize) + len(`"}`)

// EncodeEntry encodes e for the log, authenticated under the cluster's
// root key. The node that proposes a write calls it before raft.Apply;
// every node verifies the MAC before it applies the entry.
func (s *State) EncodeEntry(e *Entry) ([]byte, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("failed to encode log entry: %w", err)
	}
	key, err := s.entryMACKey(e)
	if err != nil {
		return nil, err
	}
	body := data[:len(data)-1] // without the closing brace
	mac := entryMAC(key, body)
	out := make([]byte, 0, len(body)+entryMACSuffixLen)
	out = append(out, body...)
	out = append(out, entryMACPrefix...)
	out = base64.StdEncoding.AppendEncode(out, mac)
	return append(out, `"}`...), nil
}

// entryMAC is the MAC of an entry's JSON without its closing brace.
func entryMAC(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	h.Write([]byte("}"))
	return h.Sum(nil)
}

// entryMACKey returns the key that authenticates e. An init entry carries
// the root key, sealed by the HSM: its MAC key is derived from that root
// key. That is sound because only a holder of the HSM key can seal a root
// key the HSM unseals, and so only such a holder knows the MAC key of an
// init entry; anyone else can at most copy the cluster's own init entry,
// which a state applies once. Every other entry is authenticated under the
// root key of the state it is applied to.
func (s *State) entryMACKey(e *Entry) ([]byte, error) {
	if e.Op == OpInit {
		if e.Init == nil {
			return nil, fmt.Errorf("%w: init entry without root key", ErrInvalidArgument)
		}
		_, macs, err := unsealRoot(s.hsm, e.Init.SealedRootKey)
		if err != nil {
			return nil, err
		}
		return macs.entry, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.clusterID == "" {
		return nil, ErrNotInitialized
	}
	return s.macs.entry, nil
}

// splitEntryMAC splits an authenticated entry into the JSON it
// authenticates (without its closing brace) and its MAC. ok is false for
// an entry without a MAC: one written by a previous version of Keep.
func splitEntryMAC(data []byte) (body, mac []byte, ok bool) {
	n := len(data) - entryMACSuffixLen
	if n < 1 || string(data[n:n+len(entryMACPrefix)]) != entryMACPrefix || string(data[len(data)-2:]) != `"}` {
		return nil, nil, false
	}
	encoded := data[n+len(entryMACPrefix) : len(data)-2]
	mac = make([]byte, base64.StdEncoding.DecodedLen(len(encoded)))
	if k, err := base64.StdEncoding.Strict().Decode(mac, encoded); err != nil || k != macSize {
		return nil, nil, false
	}
	return data[:n], mac[:macSize], true
}

// decodeEntry decodes a log entry. With legacy, an entry without a MAC is
// accepted (authenticated == false); an entry with a MAC is always
// verified, by verifyEntry once the caller holds the lock.
func decodeEntry(data []byte, legacy bool) (e Entry, body, mac []byte, err error) {
	body, mac, authenticated := splitEntryMAC(data)
	if !authenticated && !legacy {
		return Entry{}, nil, nil, fmt.Errorf("log entry: %w: it carries no MAC", ErrNotAuthentic)
	}
	if err := json.Unmarshal(data, &e); err != nil {
		if authenticated {
			// No proposer writes malformed JSON: it was changed.
			return Entry{}, nil, nil, fmt.Errorf("log entry: %w: malformed: %v", ErrNotAuthentic, err)
		}
		return Entry{}, nil, nil, fmt.Errorf("%w: malformed log entry: %v", ErrInvalidArgument, err)
	}
	return e, body, mac, nil
}

// CheckEntry reports whether this state would accept the encoded entry
// data as authentic (ErrNotAuthentic if not), without applying it. A
// leader checks each entry before it enters the log: one that is not
// authentic stops every node that applies it, and a node whose state
// changed under a write it answered would propose one.
func (s *State) CheckEntry(data []byte) error {
	// Nearly every entry is authenticated under the state's own key: that
	// costs one HMAC, and decoding the entry only the others.
	if body, mac, ok := splitEntryMAC(data); ok {
		s.mu.RLock()
		own := s.clusterID != "" && hmac.Equal(entryMAC(s.macs.entry, body), mac)
		s.mu.RUnlock()
		if own {
			return nil
		}
	}
	e, body, mac, err := decodeEntry(data, false)
	if err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.verifyEntry(&e, body, mac)
}

// verifyEntry checks the MAC of a decoded entry; a nil mac is a legacy
// entry that decodeEntry let through. The caller holds s.mu.
func (s *State) verifyEntry(e *Entry, body, mac []byte) error {
	if mac == nil {
		return nil
	}
	var key []byte
	switch {
	case e.Op == OpInit && e.Init != nil:
		_, macs, err := unsealRoot(s.hsm, e.Init.SealedRootKey)
		if err != nil {
			return fmt.Errorf("log entry: %w: %w", ErrNotAuthentic, err)
		}
		key = macs.entry
	case s.clusterID != "":
		key = s.macs.entry
	default:
		// Only the init entry comes before the init entry: this one
		// cannot be verified, and is most likely the init entry changed.
		return fmt.Errorf("log entry %q: %w: %w: it comes before the init entry", e.Op, ErrNotAuthentic, ErrNotInitialized)
	}
	if !hmac.Equal(entryMAC(key, body), mac) {
		if e.Op != OpInit && s.replacedEntryMAC != nil && hmac.Equal(entryMAC(s.replacedEntryMAC, body), mac) {
			return fmt.Errorf("%w: the write was made before a restore replaced the root key; try again", ErrInvalidArgument)
		}
		return fmt.Errorf("log entry %q: %w: its MAC does not match", e.Op, ErrNotAuthentic)
	}
	return nil
}
