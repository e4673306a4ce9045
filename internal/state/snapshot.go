package state

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/btree"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/hsm"
)

// snapshotFormat is the version of the snapshot encoding: 2 is the JSON
// in an authenticated envelope (envelope.go), 1 the JSON alone.
const snapshotFormat = envelopeFormat

// snapshot is the whole state as written to disk and sent to followers. Key
// material in it is sealed, exactly as in the log.
type snapshot struct {
	Format        int               `json:"format"`
	ClusterID     string            `json:"cluster_id"`
	SealedRootKey []byte            `json:"sealed_root_key"`
	Enclaves      []snapshotEnclave `json:"enclaves"`
	Identities    []Identity        `json:"identities"`
	Settings      map[string]string `json:"settings,omitempty"`
	// ReplacedRootKey is the sealed root key a restore replaced (see
	// State.replacedRootKey); raft snapshots only.
	ReplacedRootKey []byte `json:"replaced_root_key,omitempty"`
	// Usage is the usage table (usage.Table's JSON); snapshots of earlier
	// versions of Keep have none, and load with no usage.
	Usage json.RawMessage `json:"usage,omitempty"`
}

type snapshotEnclave struct {
	Enclave
	Keys     []snapshotKey `json:"keys"`
	Policies []Policy      `json:"policies"`
}

type snapshotKey struct {
	Name        string            `json:"name"`
	Next        uint32            `json:"next"`
	RotateEvery time.Duration     `json:"rotate_every,omitempty"`
	Versions    []snapshotVersion `json:"versions"`
}

type snapshotVersion struct {
	Version   uint32         `json:"version"`
	Type      crypto.KeyType `json:"type"`
	Sealed    []byte         `json:"sealed"`
	Imported  bool           `json:"imported,omitempty"`
	KES       *KESArgs       `json:"kes,omitempty"`
	CreatedAt time.Time      `json:"created_at"`
	CreatedBy string         `json:"created_by,omitempty"`
	Disabled  bool           `json:"disabled,omitempty"`
	DeleteAt  time.Time      `json:"delete_at,omitzero"`
}

// Snapshot writes the whole state to w for raft, key material sealed, in
// an envelope authenticated under the root key.
func (s *State) Snapshot(w io.Writer) error { return s.write(w, snapshotEnvelope) }

// Backup writes the whole state to w as a backup: a snapshot authenticated
// under the backup MAC key, so that raft snapshots and backups cannot be
// taken for each other.
func (s *State) Backup(w io.Writer) error { return s.write(w, backupEnvelope) }

func (s *State) write(w io.Writer, kind envelopeKind) error {
	c, err := s.capture(kind)
	if err != nil {
		return err
	}
	return c.Encode(w)
}

// Capture is the state at one point in time, taken for a raft snapshot:
// Encode writes what Snapshot would have written at that point, however
// the state changed since.
type Capture struct {
	kind       envelopeKind
	snap       snapshot // all but the enclaves and identities
	enclaves   []capturedEnclave
	identities []Identity // copies
	macKey     []byte
}

type capturedEnclave struct {
	Enclave
	keys     *btree.Map[string, *key]
	policies *btree.Map[string, *Policy]
}

// Capture takes the state as it is now for a raft snapshot. It is cheap,
// so that raft may call it on the goroutine that applies entries: it copies
// the B-trees of keys and policies in O(1) each (key rings and policies are
// never changed in place, see key), and copies only the enclaves, the
// identities, the settings and the usage table; the keys are encoded later,
// by Encode, while entries are applied.
func (s *State) Capture() (*Capture, error) { return s.capture(snapshotEnvelope) }

func (s *State) capture(kind envelopeKind) (*Capture, error) {
	// Under the read lock, so that reads go on: copying a B-tree writes
	// only the ID that tells its nodes shared, which no read looks at,
	// but two copies at once would race on it.
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.copying.Lock()
	defer s.copying.Unlock()
	c := &Capture{
		kind: kind,
		snap: snapshot{
			Format:        snapshotFormat,
			ClusterID:     s.clusterID,
			SealedRootKey: s.sealedRootKey,
			Settings:      maps.Clone(s.settings),
		},
		enclaves:   make([]capturedEnclave, 0, s.enclaves.len()),
		identities: make([]Identity, 0, len(s.identities)),
		macKey:     s.macs.of(kind),
	}
	s.enclaves.sorted.Scan(func(_ string, enc *enclave) bool {
		c.enclaves = append(c.enclaves, capturedEnclave{Enclave: enc.Enclave, keys: enc.keys.frozen(), policies: enc.policies.frozen()})
		return true
	})
	// Identities change in place (their policy and service accounts), and
	// there are few of them next to keys: they are copied.
	for _, i := range s.identities {
		c.identities = append(c.identities, i.clone())
	}
	if kind == snapshotEnvelope {
		c.snap.ReplacedRootKey = s.replacedRootKey
	}
	if !s.usage.Empty() {
		var err error
		if c.snap.Usage, err = json.Marshal(s.usage); err != nil {
			return nil, fmt.Errorf("failed to write %s: %w", kind.what, err)
		}
	}
	return c, nil
}

// Encode writes c to w: the snapshot, or the backup, of the state when c
// was captured, in the JSON that json.Marshal makes of the whole snapshot.
// It may run while the state changes. It never holds the whole JSON, which
// is hundreds of megabytes at a million keys: it writes it twice, one key
// at a time, once for the MAC and once to w (see writeEnvelope).
func (c *Capture) Encode(w io.Writer) error {
	top := c.snap // all but the enclaves, whose JSON is null in top
	top.Identities = slices.SortedFunc(slices.Values(c.identities), func(a, b Identity) int { return strings.Compare(a.ID, b.ID) })
	head, err := json.Marshal(&top)
	if err != nil {
		return fmt.Errorf("failed to write %s: %w", c.kind.what, err)
	}
	return writeEnvelope(w, c.kind, top.SealedRootKey, c.macKey, func(b *bodyWriter) { c.writeBody(b, head) })
}

// writeBody writes the JSON of the snapshot, with the enclaves and their
// keys in it, of which head is the JSON without its enclaves.
func (c *Capture) writeBody(b *bodyWriter, head []byte) {
	if len(c.enclaves) == 0 {
		b.write(head)
		return
	}
	before, after := b.splice(head, "enclaves")
	b.write(before)
	for i, ce := range c.enclaves {
		b.write([]byte{"[,"[min(i, 1)]})
		se := snapshotEnclave{Enclave: ce.Enclave}
		ce.policies.Scan(func(_ string, p *Policy) bool {
			se.Policies = append(se.Policies, *p)
			return true
		})
		enc, err := json.Marshal(&se)
		if err != nil {
			b.fail(err)
			return
		}
		if ce.keys.Len() == 0 {
			b.write(enc)
			continue
		}
		encBefore, encAfter := b.splice(enc, "keys")
		b.write(encBefore)
		sep := byte('[')
		ce.keys.Scan(func(name string, k *key) bool {
			b.write([]byte{sep})
			sep = ','
			b.json(snapshotKeyOf(name, k))
			return b.err == nil
		})
		b.write([]byte{']'})
		b.write(encAfter)
	}
	b.write([]byte{']'})
	b.write(after)
}

// snapshotKeyOf returns key k, named name, as a snapshot holds it.
func snapshotKeyOf(name string, k *key) *snapshotKey {
	sk := &snapshotKey{Name: name, Next: k.next, RotateEvery: k.rotateEvery, Versions: make([]snapshotVersion, 0, len(k.versions))}
	for _, v := range k.versions {
		sk.Versions = append(sk.Versions, snapshotVersion{
			Version:   v.Version,
			Type:      v.Type(),
			Sealed:    v.sealed[:],
			Imported:  v.Imported,
			KES:       v.kes.argsOf(),
			CreatedAt: v.CreatedAt,
			CreatedBy: v.CreatedBy,
			Disabled:  v.Disabled,
			DeleteAt:  v.DeleteAt,
		})
	}
	return sk
}

// Restore replaces the whole state with a raft snapshot read from r. A
// snapshot that is not authentic is refused with ErrNotAuthentic; on any
// error the state is left as it was.
func (s *State) Restore(r io.Reader) error { return s.restore(r, snapshotEnvelope, false) }

// RestoreLegacy is Restore that also accepts the unauthenticated snapshots
// of earlier versions of Keep (format 1), for a data directory that is
// being upgraded.
func (s *State) RestoreLegacy(r io.Reader) error { return s.restore(r, snapshotEnvelope, true) }

// restore reads, verifies and decodes a snapshot or backup, then builds the
// new state beside the current one and swaps it in: nothing is applied
// before every record has been read and checked. Key material is not
// unsealed here but on first use, except that of a legacy snapshot or a
// key imported from KES (see newVersion): the snapshot's MAC under the
// root key vouches for it.
func (s *State) restore(r io.Reader, kind envelopeKind, legacy bool) error {
	data, err := readAll(r)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", kind.what, err)
	}
	o, err := openSnapshot(s.hsm, data, kind, legacy)
	if err != nil {
		return err
	}
	o.snap.repairServiceAccounts()
	if err := o.snap.validate(); err != nil {
		return fmt.Errorf("invalid %s: %w", kind.what, err)
	}
	o.verify = kind == backupEnvelope
	restored, err := o.build(s.hsm)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	restored.keepCounters(s)
	s.clusterID, s.rootKey, s.macs = restored.clusterID, restored.rootKey, restored.macs
	s.sealedRootKey, s.seals = nil, nil
	s.storeHSMRoots()
	if len(restored.sealedRootKey) > 0 {
		// Cannot fail: build decoded the same seals.
		_ = s.adoptSealedRootKey(restored.sealedRootKey)
	}
	s.replacedRootKey, s.replacedEntryMAC = restored.replacedRootKey, restored.replacedEntryMAC
	s.enclaves, s.identities, s.settings, s.usage = restored.enclaves, restored.identities, restored.settings, restored.usage
	s.settingsChanged(nil, "")
	return nil
}

// Sized is a reader that knows how many bytes it holds, as a snapshot file
// does (bytes.Reader is one too).
type Sized interface {
	io.Reader
	Size() int64
}

// maxPrealloc bounds what readAll allocates up front on a reader's word.
const maxPrealloc = 16 << 30

// readAll reads r whole. A Sized reader is read into a buffer of its size:
// io.ReadAll grows its buffer by appending, and at a million keys the
// ~300 MB of a snapshot cost ~700 MB of allocations, some of them live at
// once beside the state being restored.
func readAll(r io.Reader) ([]byte, error) {
	sr, ok := r.(Sized)
	if !ok || sr.Size() <= 0 || sr.Size() > maxPrealloc {
		return io.ReadAll(r)
	}
	buf := bytes.NewBuffer(make([]byte, 0, int(sr.Size())+bytes.MinRead))
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// keyRing is a key of a snapshot and, once opened, the key ring it is.
type keyRing struct {
	enclave string
	snap    *snapshotKey
	key     *key // nil for a key without versions, which is left out
}

// openKeys opens the key rings of rs on every core (see openKey). Its
// error is that of the first key that fails, as if they were opened in
// order.
func (s *State) openKeys(rs []keyRing, legacy, verify bool) error {
	workers := min(runtime.GOMAXPROCS(0), len(rs)/1000+1)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w * len(rs) / workers; i < (w+1)*len(rs)/workers; i++ {
				r := &rs[i]
				if r.key, errs[w] = s.openKey(r.enclave, r.snap, legacy, verify); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// openKey returns the key ring sk of enclave, or nil if it has no
// versions. Its material is unsealed on first use (see newVersion), but
// that of a legacy snapshot, which is sealed again under keyAAD now. With
// verify, every version's material is unsealed once now, to refuse what
// does not unseal (material moved to another version, key or type), and
// dropped: the keys of a backup restore as unused.
func (s *State) openKey(enclave string, sk *snapshotKey, legacy, verify bool) (*key, error) {
	if len(sk.Versions) == 0 {
		return nil, nil
	}
	k := &key{next: sk.Next, rotateEvery: sk.RotateEvery}
	for _, sv := range sk.Versions {
		v, err := s.newVersion(enclave, sk.Name, sv.Version, sv.Type, sv.Sealed, sv.KES, legacy)
		if err != nil {
			return nil, err
		}
		if verify && v.use.Load() == nil {
			if _, err := s.unsealKey(enclave, sk.Name, v.Version, v.Type(), v.sealed[:]); err != nil {
				return nil, err
			}
		}
		v.Imported, v.CreatedAt, v.CreatedBy, v.Disabled, v.DeleteAt = sv.Imported, sv.CreatedAt, intern(sv.CreatedBy), sv.Disabled, sv.DeleteAt
		k.versions = append(k.versions, v)
	}
	// Sorted by a snapshot that this version wrote; a backup made
	// elsewhere may list them otherwise.
	slices.SortFunc(k.versions, func(a, b *version) int { return cmp.Compare(a.Version, b.Version) })
	return k, nil
}

// build returns a new state that holds o. Key material of a legacy
// snapshot is sealed again under keyAAD; other material is unsealed on
// first use (see newVersion).
func (o *opened) build(h Unsealer) (*State, error) {
	snap := &o.snap
	restored := New(h)
	if snap.ClusterID != "" {
		seals, err := hsm.DecodeSeals(snap.SealedRootKey)
		if err != nil {
			return nil, err
		}
		restored.clusterID, restored.sealedRootKey, restored.seals, restored.rootKey, restored.macs = snap.ClusterID, snap.SealedRootKey, seals, o.root, o.macs
	}
	if len(snap.ReplacedRootKey) > 0 {
		_, replaced, err := unsealRoot(h, snap.ReplacedRootKey)
		if err != nil {
			return nil, fmt.Errorf("replaced root key: %w", err)
		}
		restored.replacedRootKey, restored.replacedEntryMAC = snap.ReplacedRootKey, replaced.entry
	}
	// The keys are opened on every core, then put in their enclaves in
	// order.
	var rings []keyRing
	for _, se := range snap.Enclaves {
		for i := range se.Keys {
			rings = append(rings, keyRing{enclave: se.Name, snap: &se.Keys[i]})
		}
	}
	if err := restored.openKeys(rings, o.legacy, o.verify); err != nil {
		return nil, err
	}
	for _, se := range snap.Enclaves {
		enc := &enclave{Enclave: se.Enclave}
		for _, r := range rings[:len(se.Keys)] {
			if r.key != nil {
				enc.putKey(r.snap.Name, r.key)
			}
		}
		rings = rings[len(se.Keys):]
		for _, p := range se.Policies {
			enc.policies.set(p.Name, &p)
		}
		restored.enclaves.set(se.Name, enc)
	}
	for _, i := range snap.Identities {
		restored.putIdentity(&i)
	}
	if snap.Settings != nil {
		restored.settings = snap.Settings
	}
	if len(snap.Usage) > 0 {
		if err := json.Unmarshal(snap.Usage, restored.usage); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
		restored.usage.Retain(restored.hasVersion)
	}
	return restored, nil
}
