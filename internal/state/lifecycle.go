package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/usage"
)

// Reset empties the state, as before the init entry. A node does this when
// it joins a cluster: it takes the cluster's state from the log.
func (s *State) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusterID, s.sealedRootKey, s.seals, s.rootKey, s.macs = "", nil, nil, crypto.Key{}, macKeys{}
	s.storeHSMRoots()
	s.replacedRootKey, s.replacedEntryMAC = nil, nil
	s.enclaves, s.identities = sortedMap[*enclave]{}, map[string]*Identity{}
	s.settings, s.usage = map[string]string{}, usage.NewTable()
	s.settingsChanged(nil, "")
}

// Fresh reports whether the state holds nothing but what init creates: no
// keys, policies or identities, no enclave but the default one. Only a
// fresh node may join another cluster or receive a backup, so that nothing
// is lost.
func (s *State) Fresh() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.freshLocked()
}

// applyRestore replaces enclaves, keys, policies and identities with those
// of a backup (a snapshot of another or the same cluster). The cluster keeps
// its ID; it adopts the backup's root key, under which the backup's key
// material is sealed.
func (s *State) applyRestore(e *Entry) error {
	if !s.freshLocked() {
		return fmt.Errorf("%w: restore needs a fresh cluster, but this one holds keys, policies or identities", ErrInvalidArgument)
	}
	backup := New(s.restoreUnsealer())
	if err := backup.restore(bytes.NewReader(e.Restore), backupEnvelope, e.RestoreLegacy); err != nil {
		// Not wrapped: a decryption failure here is not the client's
		// "invalid ciphertext" and must not be reported as one.
		if errors.Is(err, crypto.ErrDecrypt) {
			return fmt.Errorf("%w: the backup cannot be unsealed: it comes from a cluster with another HSM key, or it is damaged", ErrInvalidArgument)
		}
		if errors.Is(err, ErrInvalidArgument) {
			return err
		}
		return fmt.Errorf("%w: invalid backup: %v", ErrInvalidArgument, err)
	}
	if backup.clusterID == "" {
		return fmt.Errorf("%w: the backup holds no cluster state", ErrInvalidArgument)
	}
	if !sameKey(backup.rootKey, s.rootKey) {
		// A backup of another cluster: the cluster adopts its root key,
		// and with it the HSMs that seal that key. Every node must be
		// able to unseal it, which only a cluster of one HSM can promise.
		if len(s.seals) > 1 {
			return fmt.Errorf("%w: the backup comes from another cluster, and its root key would have to be unsealed by each of this cluster's HSMs (%v); remove all HSMs but one first", ErrInvalidArgument, hsm.Names(s.seals))
		}
		s.replacedRootKey, s.replacedEntryMAC = s.sealedRootKey, s.macs.entry
		s.rootKey, s.macs = backup.rootKey, backup.macs
		if err := s.adoptSealedRootKey(backup.sealedRootKey); err != nil {
			return err
		}
	}
	s.enclaves, s.identities, s.usage = backup.enclaves, backup.identities, backup.usage
	return nil
}

// amongUnsealer is an Unsealer that can be told which HSMs' seals to try
// (hsm.Keyring is one).
type amongUnsealer interface {
	UnsealAmong(ctx context.Context, sealed []byte, among []string) ([]byte, error)
}

type among struct {
	u     amongUnsealer
	names []string
}

func (a among) Unseal(ctx context.Context, sealed []byte) ([]byte, error) {
	return a.u.UnsealAmong(ctx, sealed, a.names)
}

// restoreUnsealer is the Unsealer of a backup: one that tries only the
// seals of the cluster's own HSMs, which every node has, so that a node
// configured with one more HSM cannot unseal a backup its peers cannot. The
// caller holds s.mu.
func (s *State) restoreUnsealer() Unsealer {
	if u, ok := s.hsm.(amongUnsealer); ok {
		return among{u: u, names: hsm.Names(s.seals)}
	}
	return s.hsm
}

func (s *State) freshLocked() bool {
	if len(s.identities) > 0 || s.enclaves.len() > 1 {
		return false
	}
	for _, e := range s.enclaves.byName {
		if e.Name != DefaultEnclave || e.keys.len() > 0 || e.policies.len() > 0 {
			return false
		}
	}
	return true
}

// MaxBackup bounds the size of a backup that a restore takes,
// decompressed: some three million keys. A restore is installed as a raft
// snapshot (RestoreSnapshot), not as a log entry, so the log's limit on an
// entry does not bound it.
const MaxBackup = 1 << 30

// IsRestoreEntry reports whether data, an entry made by EncodeEntry, is a
// restore. EncodeEntry writes the op first, so the prefix tells it without
// decoding the backup the entry carries. The leader restores such an entry
// as a raft snapshot (RestoreSnapshot) instead of appending it to the log;
// an entry it does not recognize here still applies as before.
func IsRestoreEntry(data []byte) bool {
	return bytes.HasPrefix(data, restoreEntryPrefix)
}

var restoreEntryPrefix = []byte(`{"op":"` + string(OpRestore) + `",`)

// RestoreSnapshot writes to w the raft snapshot of the state that applying
// the restore entry data would make, checked exactly as Apply checks it:
// the entry's MAC, the backup's MAC (or, for a legacy backup, that the
// operator asked for one), that the cluster is fresh. The state itself is
// not changed. The leader installs the snapshot with raft's user restore:
// a backup of a million keys (hundreds of MB) is far larger than a log
// entry may be (raft-wal takes at most 64 MiB), and followers receive it
// as a snapshot. The caller must keep writes from being applied between
// this call and the installation, or they would be lost.
func (s *State) RestoreSnapshot(data []byte, w io.Writer) error {
	e, body, mac, err := decodeEntry(data, false)
	if err != nil {
		return err
	}
	if e.Op != OpRestore {
		return fmt.Errorf("%w: log entry %q is not a restore", ErrInvalidArgument, e.Op)
	}
	next := New(s.hsm)
	s.mu.RLock()
	if err := s.verifyEntry(&e, body, mac); err != nil {
		s.mu.RUnlock()
		return err
	}
	if s.clusterID == "" {
		s.mu.RUnlock()
		return ErrNotInitialized
	}
	// The part of the state that a restore keeps; enclaves and identities
	// are those of a fresh cluster (applyRestore checks), which it
	// replaces, and are never changed in place by it.
	next.clusterID, next.sealedRootKey, next.seals, next.rootKey, next.macs = s.clusterID, s.sealedRootKey, s.seals, s.rootKey, s.macs
	next.replacedRootKey, next.replacedEntryMAC = s.replacedRootKey, s.replacedEntryMAC
	next.enclaves, next.identities = s.enclaves, s.identities
	next.settings = maps.Clone(s.settings)
	s.mu.RUnlock()
	next.storeHSMRoots()
	if err := next.applyRestore(&e); err != nil {
		return err
	}
	e.Restore = nil // the backup, decoded into next, need not stay in memory
	c, err := next.Capture()
	if err != nil {
		return err
	}
	return c.Encode(w)
}
