package state

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keep-kms/keep/internal/usage"
)

// The lifecycle errors. A key version that is not active serves nothing;
// the errors say which version, until when, and how to undo it.
var (
	ErrKeyDisabled        = errors.New("key is disabled")
	ErrKeyPendingDeletion = errors.New("key is pending deletion")
)

// VersionState is what a key version may do: serve (active), nothing until
// it is enabled again (disabled), or nothing until it is destroyed at its
// DeleteAt unless the deletion is cancelled (pending-deletion).
type VersionState string

// The states of a key version. Their names are on the wire.
const (
	StateActive          VersionState = "active"
	StateDisabled        VersionState = "disabled"
	StatePendingDeletion VersionState = "pending-deletion"
)

// State is the state of v: pending deletion overrides disabled, so that a
// cancelled deletion returns a disabled version to disabled.
func (v *versionInfo) State() VersionState {
	switch {
	case !v.DeleteAt.IsZero():
		return StatePendingDeletion
	case v.Disabled:
		return StateDisabled
	default:
		return StateActive
	}
}

// Serves returns nil if v may generate, encrypt, decrypt and MAC, and
// otherwise the error that says why not and how to undo it.
func (v *KeyVersion) Serves() error {
	if v.Disabled || !v.DeleteAt.IsZero() {
		return v.refusal()
	}
	return nil
}

// refusal is Serves' error, kept out of line so that the check stays cheap.
func (v *KeyVersion) refusal() error {
	if !v.DeleteAt.IsZero() {
		return fmt.Errorf("%w: version %d of key %s is destroyed at %s; cancel with 'keep cancel-rm-key %s -v %d'",
			ErrKeyPendingDeletion, v.Version, v.Name, v.DeleteAt.UTC().Format(time.RFC3339), v.Name, v.Version)
	}
	return fmt.Errorf("%w: version %d of key %s is disabled; enable it with 'keep enable-key %s -v %d'",
		ErrKeyDisabled, v.Version, v.Name, v.Name, v.Version)
}

// KeyStateArgs disable or enable versions of a key: one (0: the latest) or
// all.
type KeyStateArgs struct {
	Version  uint32 `json:"version,omitempty"`
	All      bool   `json:"all,omitempty"`
	Disabled bool   `json:"disabled,omitempty"`
}

// DestroyKeyArgs destroy a version whose deletion is due: the leader
// proposes them when DeleteAt has passed. DeleteAt must be the version's,
// so that an entry proposed before a cancel and a new schedule destroys
// nothing.
type DestroyKeyArgs struct {
	Version  uint32    `json:"version"`
	DeleteAt time.Time `json:"delete_at"`
}

// RotationArgs set the period after which the leader adds a version to a
// key; 0 turns automatic rotation off.
type RotationArgs struct {
	Every time.Duration `json:"every"`
}

// targets returns the versions of k an entry names: all of them, one, or
// the latest (0), oldest first.
func (k *key) targets(v uint32, all bool) ([]*version, error) {
	if all {
		if v != 0 {
			return nil, fmt.Errorf("%w: a version and all versions are mutually exclusive", ErrInvalidArgument)
		}
		return k.versions, nil
	}
	if v == 0 {
		return []*version{k.latest()}, nil
	}
	ver, ok := k.version(v)
	if !ok {
		return nil, ErrKeyNotFound
	}
	return []*version{ver}, nil
}

// keyOf returns the key an entry names.
func (s *State) keyOf(e *Entry) (*enclave, *key, error) {
	enc, err := s.enclave(e.Enclave)
	if err != nil {
		return nil, nil, err
	}
	k, ok := enc.keys.get(e.Name)
	if !ok {
		return nil, nil, ErrKeyNotFound
	}
	return enc, k, nil
}

// applyScheduleDeletion marks versions pending deletion until args.At.
// Every targeted version must be active or disabled: a version already
// pending keeps its time (cancel first to choose another).
func (s *State) applyScheduleDeletion(e *Entry, enc *enclave, k *key, args *DeleteKeyArgs) error {
	if !args.At.After(e.Time) {
		return fmt.Errorf("%w: a deletion is scheduled after the entry's time", ErrInvalidArgument)
	}
	vs, err := k.targets(args.Version, args.All)
	if err != nil {
		return err
	}
	var todo []*version
	for _, v := range vs {
		if v.DeleteAt.IsZero() {
			todo = append(todo, v)
		} else if !args.All {
			return fmt.Errorf("%w: version %d of key %q is already pending deletion until %s", ErrInvalidArgument, v.Version, e.Name, v.DeleteAt.UTC().Format(time.RFC3339))
		}
	}
	if len(todo) == 0 {
		return fmt.Errorf("%w: every version of key %q is already pending deletion", ErrInvalidArgument, e.Name)
	}
	enc.putKey(e.Name, k.with(todo, func(v *version) { v.DeleteAt = args.At.UTC() }))
	return nil
}

// applyCancelDeletion returns versions pending deletion to what they were.
func (s *State) applyCancelDeletion(e *Entry) error {
	enc, k, err := s.keyOf(e)
	if err != nil {
		return err
	}
	args := e.DeleteKey
	if args == nil {
		return fmt.Errorf("%w: cancel entry without arguments", ErrInvalidArgument)
	}
	vs, err := k.targets(args.Version, args.All)
	if err != nil {
		return err
	}
	var todo []*version
	for _, v := range vs {
		if !v.DeleteAt.IsZero() {
			todo = append(todo, v)
		}
	}
	if len(todo) == 0 {
		return fmt.Errorf("%w: no version of key %q named here is pending deletion", ErrInvalidArgument, e.Name)
	}
	enc.putKey(e.Name, k.with(todo, func(v *version) { v.DeleteAt = time.Time{} }))
	return nil
}

// applyKeyState disables or enables versions.
func (s *State) applyKeyState(e *Entry) error {
	enc, k, err := s.keyOf(e)
	if err != nil {
		return err
	}
	if e.KeyState == nil {
		return fmt.Errorf("%w: key state entry without arguments", ErrInvalidArgument)
	}
	vs, err := k.targets(e.KeyState.Version, e.KeyState.All)
	if err != nil {
		return err
	}
	enc.putKey(e.Name, k.with(vs, func(v *version) { v.Disabled = e.KeyState.Disabled }))
	return nil
}

// applyDestroyKey destroys a version whose deletion is due, and the key
// with its last version. An entry for a version that is gone, or no longer
// pending with that time, destroys nothing (ErrKeyNotFound): two leaders
// may propose the same destruction, and a cancel may come first.
func (s *State) applyDestroyKey(e *Entry) error {
	enc, k, err := s.keyOf(e)
	if err != nil {
		return err
	}
	args := e.Destroy
	if args == nil {
		return fmt.Errorf("%w: destroy entry without arguments", ErrInvalidArgument)
	}
	v, ok := k.version(args.Version)
	if !ok || v.DeleteAt.IsZero() || !v.DeleteAt.Equal(args.DeleteAt) {
		return fmt.Errorf("%w: version %d of key %q is not pending deletion at %s", ErrKeyNotFound, args.Version, e.Name, args.DeleteAt.UTC().Format(time.RFC3339))
	}
	if e.Time.Before(v.DeleteAt) {
		return fmt.Errorf("%w: version %d of key %q is not due before %s", ErrInvalidArgument, args.Version, e.Name, v.DeleteAt.UTC().Format(time.RFC3339))
	}
	s.removeVersion(enc, e.Name, k, args.Version)
	return nil
}

// removeVersion deletes version n of key k (name) of enc, and the key with
// its last version.
func (s *State) removeVersion(enc *enclave, name string, k *key, n uint32) {
	if len(k.versions) == 1 {
		enc.dropKey(name)
		return
	}
	c := *k
	c.versions = slices.DeleteFunc(slices.Clone(k.versions), func(v *version) bool { return v.Version == n })
	enc.putKey(name, &c)
}

// applyRotation sets a key's rotation period.
func (s *State) applyRotation(e *Entry) error {
	enc, k, err := s.keyOf(e)
	if err != nil {
		return err
	}
	if e.Rotation == nil || e.Rotation.Every < 0 {
		return fmt.Errorf("%w: rotation entry without a period of 0 or more", ErrInvalidArgument)
	}
	c := *k
	c.rotateEvery = e.Rotation.Every
	enc.putKey(e.Name, &c)
	return nil
}

// KeyInfo is a key with every version and its rotation period.
type KeyInfo struct {
	Name        string
	RotateEvery time.Duration // 0: no automatic rotation
	Versions    []KeyVersion  // oldest first
	Usage       []usage.Usage // of each version, as Versions
}

// NextRotation is when the leader adds a version to the key, or the zero
// time if it does not rotate (no period, or its latest version is not
// active).
func (i *KeyInfo) NextRotation() time.Time {
	if i.RotateEvery <= 0 || len(i.Versions) == 0 {
		return time.Time{}
	}
	latest := i.Versions[len(i.Versions)-1]
	if latest.State() != StateActive {
		return time.Time{}
	}
	return latest.CreatedAt.Add(i.RotateEvery)
}

// KeyInfo returns a key with all its versions.
func (s *State) KeyInfo(enclave, name string) (KeyInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.enclaves.get(enclave)
	if !ok {
		return KeyInfo{}, ErrEnclaveNotFound
	}
	k, ok := e.keys.get(name)
	if !ok {
		return KeyInfo{}, ErrKeyNotFound
	}
	info := KeyInfo{Name: name, RotateEvery: k.rotateEvery}
	now := time.Now()
	for _, v := range k.versions {
		info.Versions = append(info.Versions, v.listed(name))
		info.Usage = append(info.Usage, s.usage.Usage(usage.ID{Enclave: enclave, Name: name, Version: v.Version}, now))
	}
	return info, nil
}

// Due is a key version whose scheduled deletion or rotation is due.
type Due struct {
	Enclave, Name string
	Version       uint32    // the version to destroy; for a rotation, the latest
	DeleteAt      time.Time // the destruction's time; zero for a rotation
}

// Due returns the destructions and rotations due at now: versions pending
// deletion whose time has come, and keys whose latest version is active
// and older than their rotation period.
func (s *State) Due(now time.Time) (destroy, rotate []Due) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for en, enc := range s.enclaves.byName {
		for kn := range enc.due {
			k, _ := enc.keys.get(kn)
			for _, v := range k.versions {
				if !v.DeleteAt.IsZero() && !now.Before(v.DeleteAt) {
					destroy = append(destroy, Due{Enclave: en, Name: kn, Version: v.Version, DeleteAt: v.DeleteAt})
				}
			}
			if k.rotateEvery > 0 {
				latest := k.latest()
				if latest.State() == StateActive && !now.Before(latest.CreatedAt.Add(k.rotateEvery)) {
					rotate = append(rotate, Due{Enclave: en, Name: kn, Version: latest.Version})
				}
			}
		}
	}
	return destroy, rotate
}
