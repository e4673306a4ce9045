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

// HMAC returns HMAC-SHA256 of message under a key. The MAC key derives from
// the key's oldest version, so that adding versions (a rotation) does not
// change the MACs: MinIO derives its root credentials from them.
func (s *Service) HMAC(c Caller, enclave, name string, message []byte) ([]byte, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmdKeyMAC, name); err != nil {
		return nil, err
	}
	versions, err := s.state.KeyVersions(enclave, name)
	if err != nil {
		return nil, err
	}
	if len(versions) == 0 {
		return nil, state.ErrKeyNotFound
	}
	return versions[0].Key.MAC(message)
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
