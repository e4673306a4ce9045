// Package state is Keep's replicated state machine: enclaves, keys, policies
// and identities, held in memory.
//
// It knows nothing of HTTP or raft. Writes arrive as encoded Entry values
// through Apply, which is deterministic: every node that applies the same
// entries in the same order holds the same state. Reads are served from
// memory under a read lock, with no network hop.
package state

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/btree"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/usage"
)

// DefaultEnclave is the enclave created with the cluster; requests that name
// no enclave act in it.
const DefaultEnclave = "default"

// Unsealer unseals the root key; an HSM is one.
type Unsealer interface {
	Unseal(ctx context.Context, ciphertext []byte) ([]byte, error)
}

// State is the in-memory state of a cluster. It is safe for concurrent use.
type State struct {
	hsm Unsealer

	mu            sync.RWMutex
	copying       sync.Mutex // held with mu read-locked to capture the state (see capture)
	clusterID     string
	sealedRootKey []byte
	seals         []hsm.Seal // sealedRootKey, decoded
	rootKey       crypto.Key
	macs          macKeys // derived from rootKey
	// replacedRootKey is the sealed root key that the last restore
	// replaced, and replacedEntryMAC its entry MAC key: entries proposed
	// before the restore was applied carry that MAC, and are refused as a
	// failed write, not as tampering. Snapshots keep it, so that a node
	// that restarts from one between the restore and such an entry judges
	// the entry as every other node did.
	replacedRootKey  []byte
	replacedEntryMAC []byte
	enclaves         sortedMap[*enclave]
	identities       map[string]*Identity // by ID; an identity lives in one enclave
	settings         map[string]string    // cluster-wide settings, validated by the service
	usage            *usage.Table         // the use of key versions, as the nodes report it
	onSettings       func(SettingsUpdate)
	onSeals          func(sealed, root []byte)
	admin            atomic.Pointer[string]   // settings[SettingAdminIdentity], read without the lock
	hsmRoots         atomic.Pointer[[]string] // root API key identities of seals, read without the lock
}

type enclave struct {
	Enclave
	keys     sortedMap[*key]
	policies sortedMap[*Policy] // never changed in place: replaced
	// identities are the IDs of the identities that live in the enclave,
	// in order, for its list pages.
	identities btree.Set[string]
	// due names the keys that rotate or have a version pending deletion,
	// which the leader checks every second (State.Due): the others, nearly
	// all of a million keys, are not visited.
	due map[string]struct{}
}

// putKey puts k in e under name.
func (e *enclave) putKey(name string, k *key) {
	e.keys.set(name, k)
	if k.mayBeDue() {
		if e.due == nil {
			e.due = map[string]struct{}{}
		}
		e.due[name] = struct{}{}
	} else {
		delete(e.due, name)
	}
}

// dropKey removes the key name from e.
func (e *enclave) dropKey(name string) {
	e.keys.delete(name)
	delete(e.due, name)
}

// key is a key ring: its versions and the number the next one gets, so that
// a deleted version number is never given out again.
//
// A key in the state, and each of its versions, is never changed in place:
// a change makes a changed copy and puts it in the enclave (see key.with),
// so that a snapshot captured before holds what was.
type key struct {
	versions    []*version // oldest first; never empty
	next        uint32
	rotateEvery time.Duration // 0: not rotated automatically
}

// version is a key version as the state holds it: what it is, and its
// material sealed; not its name, which the key's maps hold, nor its
// material or counter until it is used (176 bytes). The material is unsealed on the version's first use
// (State.serving), not when the version is applied or restored, so that a
// restart unseals none of a million keys and a key never used costs no
// unsealed key state.
//
// A version is never changed in place but copied (see key), and its copy
// takes the first use that the version had; only the version in the
// state, never a copy that a snapshot holds, is used and so gets a first
// use, under s.mu read-locked, while copies are made under s.mu locked.
type version struct {
	versionInfo
	kes *KESKey // nil unless imported from KES
	// sealed is the material sealed under the root key (keyAAD), unsealed
	// on first use and kept for snapshots, so that they never hold
	// plaintext. All sealed material has this length (see newVersion):
	// held inline, it costs no allocation and no pointer.
	sealed [sealedKeySize]byte
	use    atomic.Pointer[inUse] // nil until the version is first used
}

// inUse is what a version has once it is used: its material unsealed, and
// the counter of its use, which every copy of the version shares.
type inUse struct {
	key     crypto.Key // zero when only counter was carried over (see keepCounters)
	counter *usage.Counter
}

// listed returns v, named name, as lists of versions show it: without its
// material and counter.
func (v *version) listed(name string) KeyVersion {
	return KeyVersion{Name: name, versionInfo: v.versionInfo, KES: v.kes}
}

// clone returns a copy of v that shares its first use.
func (v *version) clone() *version {
	c := &version{versionInfo: v.versionInfo, kes: v.kes, sealed: v.sealed}
	c.use.Store(v.use.Load())
	return c
}

// mayBeDue reports whether a rotation or a destruction of k may come due.
func (k *key) mayBeDue() bool {
	return k.rotateEvery > 0 || slices.ContainsFunc(k.versions, func(v *version) bool { return !v.DeleteAt.IsZero() })
}

// latest returns the latest version of k.
func (k *key) latest() *version { return k.versions[len(k.versions)-1] }

// version returns version n of k.
func (k *key) version(n uint32) (*version, bool) {
	i, ok := slices.BinarySearchFunc(k.versions, n, func(v *version, n uint32) int { return cmp.Compare(v.Version, n) })
	if !ok {
		return nil, false
	}
	return k.versions[i], true
}

// with returns a copy of k in which change has been made to a copy of each
// version of vs; k and its versions stay as they are.
func (k *key) with(vs []*version, change func(*version)) *key {
	c := *k
	c.versions = slices.Clone(k.versions)
	for i, v := range c.versions {
		if slices.Contains(vs, v) {
			cv := v.clone()
			change(cv)
			c.versions[i] = cv
		}
	}
	return &c
}

// New returns an empty, uninitialized state that unseals its root key with h.
func New(h Unsealer) *State {
	return &State{
		hsm:        h,
		identities: map[string]*Identity{},
		settings:   map[string]string{},
		usage:      usage.NewTable(),
	}
}

// SettingsUpdate is what an OnSettings function is told when the
// cluster-wide settings change.
type SettingsUpdate struct {
	Settings map[string]string // every cluster-wide setting now; a copy
	// Changes are what a settings entry changed ("" resets a setting) and
	// By the identity that asked for it. Changes is nil when the settings
	// were replaced as a whole: the state was reset or restored from a
	// snapshot.
	Changes map[string]string
	By      string
}

// OnSettings registers f to be called whenever the cluster-wide settings
// change, on the goroutine that applies the change and with the state
// locked: f must not call into the State.
func (s *State) OnSettings(f func(SettingsUpdate)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onSettings = f
}

// Settings returns a copy of the cluster-wide settings.
func (s *State) Settings() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.settings)
}

// settingsChanged tells the OnSettings function what changed (nil: the
// settings were replaced as a whole) and by whom; the caller holds s.mu.
func (s *State) settingsChanged(changes map[string]string, by string) {
	admin := s.settings[SettingAdminIdentity]
	s.admin.Store(&admin)
	if s.onSettings != nil {
		s.onSettings(SettingsUpdate{Settings: maps.Clone(s.settings), Changes: maps.Clone(changes), By: by})
	}
}

// Initialized reports whether the init entry has been applied.
func (s *State) Initialized() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.clusterID != ""
}

// ClusterID returns the ID of the cluster, empty before initialization.
func (s *State) ClusterID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.clusterID
}

// Enclave returns the enclave with the given name.
func (s *State) Enclave(name string) (Enclave, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.enclaves.get(name)
	if !ok {
		return Enclave{}, ErrEnclaveNotFound
	}
	return e.Enclave, nil
}

// Enclaves returns a page of enclaves whose names start with prefix, from
// continueAt on, and the name that starts the next page ("" at the end).
func (s *State) Enclaves(prefix, continueAt string, limit int) ([]Enclave, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names, next := s.enclaves.page(prefix, continueAt, limit)
	list := make([]Enclave, 0, len(names))
	for _, n := range names {
		e, _ := s.enclaves.get(n)
		list = append(list, e.Enclave)
	}
	return list, next
}

// Key returns a version of a key, version 0 the latest, with its material
// and usage counter, to serve with: the material is unsealed on the
// version's first use, and kept.
func (s *State) Key(enclave, name string, v uint32) (kv KeyVersion, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, err := s.keyRing(enclave, name)
	if err != nil {
		return KeyVersion{}, err
	}
	ver := k.latest()
	if v != 0 {
		var ok bool
		if ver, ok = k.version(v); !ok {
			return KeyVersion{}, ErrKeyNotFound
		}
	}
	err = s.serving(enclave, name, ver, &kv)
	return kv, err
}

// OldestKey returns the oldest version of a key, as Key does.
func (s *State) OldestKey(enclave, name string) (kv KeyVersion, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, err := s.keyRing(enclave, name)
	if err != nil {
		return KeyVersion{}, err
	}
	err = s.serving(enclave, name, k.versions[0], &kv)
	return kv, err
}

// keyRing returns the key name of enclave; the caller holds s.mu.
func (s *State) keyRing(enclave, name string) (*key, error) {
	e, ok := s.enclaves.get(enclave)
	if !ok {
		return nil, ErrEnclaveNotFound
	}
	k, ok := e.keys.get(name)
	if !ok {
		return nil, ErrKeyNotFound
	}
	return k, nil
}

// Keys returns a page of keys, each as its latest version.
func (s *State) Keys(enclave, prefix, continueAt string, limit int) ([]KeyVersion, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.enclaves.get(enclave)
	if !ok {
		return nil, "", ErrEnclaveNotFound
	}
	names, next := e.keys.page(prefix, continueAt, limit)
	list := make([]KeyVersion, 0, len(names))
	for _, n := range names {
		k, _ := e.keys.get(n)
		list = append(list, k.latest().listed(n))
	}
	return list, next, nil
}

// KeyVersions returns every version of a key, oldest first.
func (s *State) KeyVersions(enclave, name string) ([]KeyVersion, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.enclaves.get(enclave)
	if !ok {
		return nil, ErrEnclaveNotFound
	}
	k, ok := e.keys.get(name)
	if !ok {
		return nil, ErrKeyNotFound
	}
	list := make([]KeyVersion, 0, len(k.versions))
	for _, v := range k.versions {
		list = append(list, v.listed(name))
	}
	return list, nil
}

// Policy returns a policy of an enclave.
func (s *State) Policy(enclave, name string) (Policy, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.enclaves.get(enclave)
	if !ok {
		return Policy{}, ErrEnclaveNotFound
	}
	p, ok := e.policies.get(name)
	if !ok {
		return Policy{}, ErrPolicyNotFound
	}
	return *p, nil
}

// Policies returns a page of the policies of an enclave.
func (s *State) Policies(enclave, prefix, continueAt string, limit int) ([]Policy, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.enclaves.get(enclave)
	if !ok {
		return nil, "", ErrEnclaveNotFound
	}
	names, next := e.policies.page(prefix, continueAt, limit)
	list := make([]Policy, 0, len(names))
	for _, n := range names {
		p, _ := e.policies.get(n)
		list = append(list, *p)
	}
	return list, next, nil
}

// Identity returns a registered identity, whatever its enclave.
func (s *State) Identity(id string) (Identity, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.identities[id]
	if !ok {
		return Identity{}, ErrIdentityNotFound
	}
	return i.clone(), nil
}

// Identities returns a page of the identities of an enclave.
func (s *State) Identities(enclave, prefix, continueAt string, limit int) ([]Identity, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.enclaves.get(enclave)
	if !ok {
		return nil, "", ErrEnclaveNotFound
	}
	ids, next := page(e.identities.Ascend, prefix, continueAt, limit)
	list := make([]Identity, 0, len(ids))
	for _, id := range ids {
		list = append(list, s.identities[id].clone())
	}
	return list, next, nil
}

// putIdentity registers i, in s.identities and in its enclave's list, which
// must exist; the caller holds s.mu.
func (s *State) putIdentity(i *Identity) {
	s.identities[i.ID] = i
	e, _ := s.enclaves.get(i.Enclave)
	e.identities.Insert(i.ID)
}

// dropIdentity removes the identity id; the caller holds s.mu.
func (s *State) dropIdentity(id string) {
	i, ok := s.identities[id]
	if !ok {
		return
	}
	delete(s.identities, id)
	if e, ok := s.enclaves.get(i.Enclave); ok {
		e.identities.Delete(id)
	}
}

// clone copies i so that readers never share a slice that Apply changes in
// place.
func (i *Identity) clone() Identity {
	c := *i
	c.ServiceAccounts = slices.Clone(i.ServiceAccounts)
	return c
}
