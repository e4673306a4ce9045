package service

import (
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/state"
)

// cmdKeyMAC is the command of computing a MAC with a key (the KES API's
// /v1/key/hmac). The pinned kms-go knows number 210 but has no constant or
// text for it, so cmds.Parse cannot read it from a policy: KEY:GENERATE
// rules govern it (see allows), as KEY:CREATE rules govern KEY:IMPORT.
const cmdKeyMAC = cmds.Command(210)

// CommandKeyMAC is the text of cmdKeyMAC, as audit records spell it.
const CommandKeyMAC = "KEY:MAC"

// KeyMAC is the command of computing a MAC with a key, for the routes
// that declare it (see Requirement).
const KeyMAC = cmdKeyMAC

// HMAC returns HMAC-SHA256 of message under a key (the KES API's
// /v1/key/hmac). The MAC key is the key's oldest version's, so that adding
// versions (a rotation) does not change the MACs: MinIO derives its root
// credentials from them. For a key imported from KES, that is KES's HMAC
// key, so MACs computed by KES stay the same.
func (s *Service) HMAC(c Caller, enclave, name string, message []byte) ([]byte, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmdKeyMAC, name); err != nil {
		return nil, err
	}
	oldest, err := s.state.OldestKey(enclave, name)
	if err != nil {
		return nil, err
	}
	return macOf(oldest, message)
}

// MAC returns the MAC of message under a version of a key (0: the latest)
// and the version used (the MinIO KMS API's KEY:MAC). It is deterministic
// per key version; for a version imported from KES it is KES's HMAC.
func (s *Service) MAC(c Caller, enclave, name string, version uint32, message []byte) (uint32, []byte, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmdKeyMAC, name); err != nil {
		return 0, nil, err
	}
	kv, err := s.state.Key(enclave, name, version)
	if err != nil {
		return 0, nil, err
	}
	mac, err := macOf(kv, message)
	return kv.Version, mac, err
}

// macOf is the MAC of message under one key version: KES's HMAC for a
// version imported from KES (kesformat.ErrNoHMACKey if KES had no HMAC key
// for it), Keep's own otherwise.
func macOf(kv state.KeyVersion, message []byte) ([]byte, error) {
	if err := kv.Serves(); err != nil {
		return nil, err
	}
	if kv.KES != nil {
		return kv.KES.HMAC(message)
	}
	return kv.Key.MAC(message)
}

// Self describes the caller and returns the policy it acts with: its own,
// or its parent's for a service account; the zero Policy when it has none.
// Every registered identity may describe itself, whatever its privilege.
func (s *Service) Self(c Caller) (state.Identity, state.Policy, error) {
	i, err := s.self(c)
	if err != nil {
		return state.Identity{}, state.Policy{}, err
	}
	_, home, policy, err := s.privilege(c)
	if err != nil || policy == "" {
		return i, state.Policy{}, err
	}
	p, err := s.state.Policy(home, policy)
	if err != nil {
		return i, state.Policy{}, nil // assigned, then deleted: no rules
	}
	return i, p, nil
}

// CheckReads returns why this node may not serve reads now (it has been
// cut off from the leader for too long), or nil once its state holds every
// acknowledged write.
func (s *Service) CheckReads() error {
	return s.cluster.AwaitReads()
}
