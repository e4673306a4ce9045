package state

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
)

// snapshotFormat is the version of the snapshot encoding.
const snapshotFormat = 1

// snapshot is the whole state as written to disk and sent to followers. Key
// material in it is sealed, exactly as in the log.
type snapshot struct {
	Format        int               `json:"format"`
	ClusterID     string            `json:"cluster_id"`
	SealedRootKey []byte            `json:"sealed_root_key"`
	Enclaves      []snapshotEnclave `json:"enclaves"`
	Identities    []Identity        `json:"identities"`
	Settings      map[string]string `json:"settings,omitempty"`
}

type snapshotEnclave struct {
	Enclave
	Keys     []snapshotKey `json:"keys"`
	Policies []Policy      `json:"policies"`
}

type snapshotKey struct {
	Name     string            `json:"name"`
	Next     uint32            `json:"next"`
	Versions []snapshotVersion `json:"versions"`
}

type snapshotVersion struct {
	Version   uint32         `json:"version"`
	Type      crypto.KeyType `json:"type"`
	Sealed    []byte         `json:"sealed"`
	Imported  bool           `json:"imported,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	CreatedBy string         `json:"created_by,omitempty"`
}

// Snapshot writes the whole state to w, key material sealed.
func (s *State) Snapshot(w io.Writer) error {
	s.mu.RLock()
	snap := snapshot{
		Format:        snapshotFormat,
		ClusterID:     s.clusterID,
		SealedRootKey: s.sealedRootKey,
		Settings:      maps.Clone(s.settings),
	}
	for _, name := range slices.Sorted(maps.Keys(s.enclaves)) {
		enc := s.enclaves[name]
		se := snapshotEnclave{Enclave: enc.Enclave}
		for _, kn := range slices.Sorted(maps.Keys(enc.keys)) {
			k := enc.keys[kn]
			sk := snapshotKey{Name: kn, Next: k.next}
			for _, vn := range slices.Sorted(maps.Keys(k.versions)) {
				v := k.versions[vn]
				sk.Versions = append(sk.Versions, snapshotVersion{
					Version:   vn,
					Type:      v.Key.Type(),
					Sealed:    v.sealed,
					Imported:  v.Imported,
					CreatedAt: v.CreatedAt,
					CreatedBy: v.CreatedBy,
				})
			}
			se.Keys = append(se.Keys, sk)
		}
		for _, pn := range slices.Sorted(maps.Keys(enc.policies)) {
			se.Policies = append(se.Policies, *enc.policies[pn])
		}
		snap.Enclaves = append(snap.Enclaves, se)
	}
	for _, id := range slices.Sorted(maps.Keys(s.identities)) {
		snap.Identities = append(snap.Identities, s.identities[id].clone())
	}
	s.mu.RUnlock()

	if err := json.NewEncoder(w).Encode(&snap); err != nil {
		return fmt.Errorf("failed to write snapshot: %w", err)
	}
	return nil
}

// Restore replaces the whole state with a snapshot read from r. On error the
// state is left as it was.
func (s *State) Restore(r io.Reader) error {
	var snap snapshot
	if err := json.NewDecoder(r).Decode(&snap); err != nil {
		return fmt.Errorf("failed to read snapshot: %w", err)
	}
	if snap.Format != snapshotFormat {
		return fmt.Errorf("unsupported snapshot format %d", snap.Format)
	}
	snap.repairServiceAccounts()
	if err := snap.validate(); err != nil {
		return fmt.Errorf("invalid snapshot: %w", err)
	}
	restored := New(s.hsm)
	if snap.ClusterID != "" {
		plain, err := s.hsm.Unseal(context.Background(), snap.SealedRootKey)
		if err != nil {
			return fmt.Errorf("failed to unseal root encryption key with HSM: %w", err)
		}
		root, err := crypto.NewKey(crypto.AES256, plain)
		clear(plain)
		if err != nil {
			return fmt.Errorf("invalid root encryption key in snapshot: %w", err)
		}
		restored.clusterID, restored.sealedRootKey, restored.rootKey = snap.ClusterID, snap.SealedRootKey, root
	}
	for _, se := range snap.Enclaves {
		enc := &enclave{Enclave: se.Enclave, keys: map[string]*key{}, policies: map[string]*Policy{}}
		for _, sk := range se.Keys {
			k := &key{versions: map[uint32]*version{}, next: sk.Next}
			for _, sv := range sk.Versions {
				material, err := restored.unsealKey(se.Name, sk.Name, sv.Type, sv.Sealed)
				if err != nil {
					return err
				}
				k.versions[sv.Version] = &version{
					KeyVersion: KeyVersion{
						Name:      sk.Name,
						Version:   sv.Version,
						Key:       material,
						Imported:  sv.Imported,
						CreatedAt: sv.CreatedAt,
						CreatedBy: sv.CreatedBy,
					},
					sealed: sv.Sealed,
				}
				k.latest = max(k.latest, sv.Version)
			}
			if len(k.versions) > 0 {
				enc.keys[sk.Name] = k
			}
		}
		for _, p := range se.Policies {
			enc.policies[p.Name] = &p
		}
		restored.enclaves[se.Name] = enc
	}
	for _, i := range snap.Identities {
		restored.identities[i.ID] = &i
	}

	if snap.Settings != nil {
		restored.settings = snap.Settings
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusterID, s.sealedRootKey, s.rootKey = restored.clusterID, restored.sealedRootKey, restored.rootKey
	s.enclaves, s.identities, s.settings = restored.enclaves, restored.identities, restored.settings
	s.settingsChanged(nil, "")
	return nil
}
