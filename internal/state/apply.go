package state

import (
	"fmt"
	"maps"
	"slices"
)

// Apply decodes, verifies and applies one entry made by EncodeEntry. The
// error it returns is the outcome of the write for the client
// (ErrKeyExists, …): a rejected entry changes nothing, and every node
// rejects it alike. An entry whose MAC does not match, or that has none, is
// refused with ErrNotAuthentic.
func (s *State) Apply(data []byte) error { return s.apply(data, false) }

// ApplyLegacy is Apply for the entries that a previous version of Keep
// wrote to the log, without a MAC: it accepts them unauthenticated (and
// verifies those that carry one). Only the raft log of a data directory
// being upgraded may be applied with it, up to its last entry at the start.
func (s *State) ApplyLegacy(data []byte) error { return s.apply(data, true) }

func (s *State) apply(data []byte, legacy bool) error {
	e, body, mac, err := decodeEntry(data, legacy)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	if err := s.verifyEntry(&e, body, mac); err != nil {
		return err
	}
	if e.Op != OpInit && s.clusterID == "" {
		return ErrNotInitialized
	}
	switch e.Op {
	case OpInit:
		return s.applyInit(&e)
	case OpCreateEnclave:
		return s.applyCreateEnclave(&e)
	case OpDeleteEnclave:
		return s.dropUsage(s.applyDeleteEnclave(&e))
	case OpCreateKey:
		return s.applyCreateKey(&e)
	case OpDeleteKey:
		return s.dropUsage(s.applyDeleteKey(&e))
	case OpCancelDeleteKey:
		return s.applyCancelDeletion(&e)
	case OpKeyState:
		return s.applyKeyState(&e)
	case OpDestroyKey:
		return s.dropUsage(s.applyDestroyKey(&e))
	case OpKeyRotation:
		return s.applyRotation(&e)
	case OpCreatePolicy:
		return s.applyCreatePolicy(&e)
	case OpDeletePolicy:
		return s.applyDeletePolicy(&e)
	case OpAssignPolicy:
		return s.applyAssignPolicy(&e)
	case OpCreateIdentity:
		return s.applyCreateIdentity(&e)
	case OpDeleteIdentity:
		return s.applyDeleteIdentity(&e)
	case OpRestore:
		return s.applyRestore(&e)
	case OpSetSettings:
		return s.applySettings(&e)
	case OpUsageReport:
		return s.applyUsageReport(&e)
	case OpHSM:
		return s.applyHSM(&e)
	default:
		return fmt.Errorf("%w: unknown log entry %q", ErrInvalidArgument, e.Op)
	}
}

func (s *State) applyInit(e *Entry) error {
	if s.clusterID != "" {
		return ErrAlreadyInitialized
	}
	if e.Init == nil || e.Init.ClusterID == "" {
		return fmt.Errorf("%w: init entry without cluster ID", ErrInvalidArgument)
	}
	root, macs, err := unsealRoot(s.hsm, e.Init.SealedRootKey)
	if err != nil {
		return err
	}
	s.clusterID, s.rootKey, s.macs = e.Init.ClusterID, root, macs
	if err := s.adoptSealedRootKey(e.Init.SealedRootKey); err != nil {
		return err
	}
	s.enclaves.set(DefaultEnclave, newEnclave(DefaultEnclave, e))
	return nil
}

func newEnclave(name string, e *Entry) *enclave {
	return &enclave{Enclave: Enclave{Name: name, CreatedAt: e.Time, CreatedBy: e.By}}
}

func (s *State) applyCreateEnclave(e *Entry) error {
	if err := ValidEnclaveName(e.Name); err != nil {
		return err
	}
	if _, ok := s.enclaves.get(e.Name); ok {
		return ErrEnclaveExists
	}
	s.enclaves.set(e.Name, newEnclave(e.Name, e))
	return nil
}

func (s *State) applyDeleteEnclave(e *Entry) error {
	if _, ok := s.enclaves.get(e.Name); !ok {
		return ErrEnclaveNotFound
	}
	if err := s.protectAdmin("deleting enclave "+e.Name, func(a *Identity) bool { return a.Enclave == e.Name }); err != nil {
		return err
	}
	s.enclaves.delete(e.Name)
	maps.DeleteFunc(s.identities, func(_ string, i *Identity) bool { return i.Enclave == e.Name })
	return nil
}

func (s *State) enclave(name string) (*enclave, error) {
	enc, ok := s.enclaves.get(name)
	if !ok {
		return nil, ErrEnclaveNotFound
	}
	return enc, nil
}

func (s *State) applyCreateKey(e *Entry) error {
	enc, err := s.enclave(e.Enclave)
	if err != nil {
		return err
	}
	if err = ValidKeyName(e.Name); err != nil {
		return err
	}
	if e.Key == nil {
		return fmt.Errorf("%w: key entry without key", ErrInvalidArgument)
	}
	if err = checkKESArgs(e.Key); err != nil {
		return err
	}
	k, exists := enc.keys.get(e.Name)
	switch {
	case exists && !e.Key.AddVersion:
		return ErrKeyExists
	case !exists && e.Key.AddVersion:
		return fmt.Errorf("cannot add a version: %w", ErrKeyNotFound)
	case !exists:
		if e.Key.RotateEvery < 0 {
			return fmt.Errorf("%w: negative rotation period", ErrInvalidArgument)
		}
		k = &key{next: 1, rotateEvery: e.Key.RotateEvery}
	}
	v := k.next
	if e.Key.Version != 0 && e.Key.Version != v {
		return fmt.Errorf("%w: version %d of key %q was sealed, but the next version is %d", ErrVersionConflict, e.Key.Version, e.Name, v)
	}
	// Version 0: a legacy entry, sealed for the key's name only.
	nv, err := s.newVersion(e.Enclave, e.Name, v, e.Key.Type, e.Key.Sealed, e.Key.KES, e.Key.Version == 0)
	if err != nil {
		return err
	}
	createdAt, createdBy := e.Key.KES.created(e.Time, e.By)
	nv.Imported, nv.CreatedAt, nv.CreatedBy = e.Key.Imported, createdAt, intern(createdBy)
	// A new key ring, not k changed: a snapshot may hold k (see key).
	enc.putKey(e.Name, &key{
		versions:    append(slices.Clip(k.versions), nv),
		next:        v + 1,
		rotateEvery: k.rotateEvery,
	})
	return nil
}

func (s *State) applyDeleteKey(e *Entry) error {
	enc, k, err := s.keyOf(e)
	if err != nil {
		return err
	}
	args := e.DeleteKey
	if args == nil {
		args = &DeleteKeyArgs{}
	}
	if !args.At.IsZero() {
		return s.applyScheduleDeletion(e, enc, k, args)
	}
	if args.All {
		if args.Version != 0 {
			return fmt.Errorf("%w: a version and all versions are mutually exclusive", ErrInvalidArgument)
		}
		enc.dropKey(e.Name)
		return nil
	}
	v := args.Version
	if v == 0 {
		v = k.latest().Version
	}
	if _, ok := k.version(v); !ok {
		return ErrKeyNotFound
	}
	s.removeVersion(enc, e.Name, k, v)
	return nil
}

func (s *State) applyCreatePolicy(e *Entry) error {
	enc, err := s.enclave(e.Enclave)
	if err != nil {
		return err
	}
	if err = ValidPolicyName(e.Name); err != nil {
		return err
	}
	if e.Policy == nil {
		return fmt.Errorf("%w: policy entry without rules", ErrInvalidArgument)
	}
	enc.policies.set(e.Name, &Policy{
		Name:      e.Name,
		Allow:     e.Policy.Allow,
		Deny:      e.Policy.Deny,
		CreatedAt: e.Time,
		CreatedBy: e.By,
	})
	return nil
}

func (s *State) applyDeletePolicy(e *Entry) error {
	enc, err := s.enclave(e.Enclave)
	if err != nil {
		return err
	}
	if _, ok := enc.policies.get(e.Name); !ok {
		return ErrPolicyNotFound
	}
	enc.policies.delete(e.Name)
	for _, i := range s.identities {
		if i.Enclave == e.Enclave && i.Policy == e.Name {
			i.Policy = ""
		}
	}
	return nil
}

func (s *State) applyAssignPolicy(e *Entry) error {
	enc, err := s.enclave(e.Enclave)
	if err != nil {
		return err
	}
	if _, ok := enc.policies.get(e.Assign); !ok {
		return ErrPolicyNotFound
	}
	i, ok := s.identities[e.Name]
	if !ok || i.Enclave != e.Enclave {
		return ErrIdentityNotFound
	}
	if i.Privilege != User || i.Parent != "" {
		return fmt.Errorf("%w: policies are assigned to User identities that are not service accounts", ErrInvalidArgument)
	}
	i.Policy = e.Assign
	return nil
}

// applyCreateIdentity creates or overwrites an identity. Service accounts
// form a forest: whatever the service checked, an entry that would close a
// cycle or nest service accounts (with those that hang below the identity)
// deeper than MaxServiceAccountDepth is refused here, alike on every node.
// Overwriting keeps the parent's list of service accounts in step with the
// identity's parent.
func (s *State) applyCreateIdentity(e *Entry) error {
	if _, err := s.enclave(e.Enclave); err != nil {
		return err
	}
	if err := ValidIdentity(e.Name); err != nil {
		return err
	}
	args := e.Identity
	if args == nil {
		return fmt.Errorf("%w: identity entry without arguments", ErrInvalidArgument)
	}
	old, exists := s.identities[e.Name]
	if exists && old.Enclave != e.Enclave {
		return fmt.Errorf("%w in enclave %q", ErrIdentityExists, old.Enclave)
	}
	if err := s.protectAdmin("replacing identity "+e.Name, func(a *Identity) bool { return a.ID == e.Name }); err != nil {
		return err
	}
	i := &Identity{
		ID:        e.Name,
		Enclave:   e.Enclave,
		Privilege: args.Privilege,
		Tags:      args.Tags,
		CreatedAt: e.Time,
		CreatedBy: e.By,
	}
	var parent *Identity
	if args.ServiceAccount {
		var ok bool
		parent, ok = s.identities[e.By]
		if !ok || parent.Enclave != e.Enclave {
			return fmt.Errorf("%w: service accounts are created by an identity of their enclave", ErrInvalidArgument)
		}
		if e.By == e.Name {
			return fmt.Errorf("%w: an identity cannot be its own service account", ErrInvalidArgument)
		}
		depth, err := s.chainLocked(e.By, e.Name)
		if err != nil {
			return err
		}
		if exists && old.Parent != e.By {
			height, err := s.heightLocked(e.Name)
			if err != nil {
				return err
			}
			if depth+height > MaxServiceAccountDepth {
				return fmt.Errorf("identity %s: %w", e.Name, ErrServiceAccountCycle)
			}
		}
		i.Parent, i.Privilege, i.Policy = e.By, parent.Privilege, parent.Policy
	}
	if i.Privilege < SysAdmin || i.Privilege > User {
		return fmt.Errorf("%w: invalid privilege %d", ErrInvalidArgument, args.Privilege)
	}
	if exists {
		// Overwriting keeps what hangs off the identity, and leaves the
		// service accounts of a parent it no longer has.
		i.ServiceAccounts = old.ServiceAccounts
		if i.Privilege == User && !args.ServiceAccount {
			i.Policy = old.Policy
		}
		if old.Parent != i.Parent {
			s.unlinkLocked(old)
		}
	}
	if parent != nil && !slices.Contains(parent.ServiceAccounts, e.Name) {
		parent.ServiceAccounts = append(parent.ServiceAccounts, e.Name)
	}
	s.putIdentity(i)
	return nil
}

func (s *State) applyDeleteIdentity(e *Entry) error {
	i, ok := s.identities[e.Name]
	if !ok || i.Enclave != e.Enclave {
		return ErrIdentityNotFound
	}
	if err := s.protectAdmin("deleting identity "+e.Name, func(a *Identity) bool { return a.ID == e.Name }); err != nil {
		return err
	}
	s.unlinkLocked(i)
	s.deleteTreeLocked(e.Name)
	return nil
}

func (s *State) applySettings(e *Entry) error {
	if id := e.Settings[SettingAdminIdentity]; id != "" {
		if err := s.checkAdmin(id); err != nil {
			return err
		}
	}
	for k, v := range e.Settings {
		if v == "" {
			delete(s.settings, k)
		} else {
			s.settings[k] = v
		}
	}
	s.settingsChanged(e.Settings, e.By)
	return nil
}
