package service

import (
	"errors"
	"strings"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/state"
)

// admit is the gate of every operation: reads wait until this node's state
// holds every acknowledged write and are refused while it is too stale to
// serve them, and then the caller must be authorized.
func (s *Service) admit(c Caller, enclave string, cmd cmds.Command, resource string) error {
	if !cmd.IsWrite() {
		if err := s.cluster.AwaitReads(); err != nil {
			return err
		}
	}
	return s.authorize(c, enclave, cmd, resource)
}

// authorize decides whether caller c may run cmd on resource (a key, policy
// or identity name; "" for lists) in enclave. It is the only place that
// decides access; every operation calls it first.
//
// The root identity and SysAdmin identities may do everything. Admins may do
// everything inside their own enclave but nothing at cluster or enclave
// level. Users may do inside their own enclave what their policy allows. A
// service account acts with the privilege and policy of its parent.
func (s *Service) authorize(c Caller, enclave string, cmd cmds.Command, resource string) error {
	priv, home, policy, err := s.privilege(c)
	if err != nil {
		return err
	}
	switch {
	case priv == state.SysAdmin:
		return nil
	case isClusterCommand(cmd), home != enclave:
		return ErrPermission
	case priv == state.Admin:
		return nil
	}
	p, err := s.state.Policy(enclave, policy)
	if err != nil {
		return ErrPermission
	}
	if !allows(p, cmd, resource) {
		return ErrPermission
	}
	return nil
}

// AuthorizeSysAdmin admits only SysAdmins: the root identity and
// identities with that privilege. Node operations (restart, backup,
// restore, settings) call it themselves; the APIs do not, they declare
// SysAdmin routes and Admit enforces it.
func (s *Service) AuthorizeSysAdmin(c Caller) error {
	priv, _, _, err := s.privilege(c)
	if err != nil {
		return err
	}
	if priv != state.SysAdmin {
		return ErrPermission
	}
	return nil
}

// authorizeEnclave admits SysAdmins and every identity whose home is
// enclave, whatever its privilege or policy: the KES API's routes that
// show the state of the server, not of keys (/v1/status, /v1/ready,
// /v1/api, /v1/metrics). MinIO calls /v1/status with the same identity it
// uses for its keys, and no policy command can grant it.
func (s *Service) authorizeEnclave(c Caller, enclave string) error {
	priv, home, _, err := s.privilege(c)
	if err != nil {
		return err
	}
	if priv != state.SysAdmin && home != enclaveName(enclave) {
		return ErrPermission
	}
	return nil
}

// privilege resolves the effective privilege, home enclave and policy of c:
// those of the top of its chain of parents for a service account. The walk
// is bounded (state.MaxServiceAccountDepth): an identity caught in a cycle
// that an older version wrote is refused, never spun on.
func (s *Service) privilege(c Caller) (state.Privilege, string, string, error) {
	if c.Identity == "" {
		return 0, "", "", ErrPermission
	}
	if s.isRoot(c.Identity) {
		return state.SysAdmin, "", "", nil
	}
	p, err := s.state.Principal(c.Identity)
	if errors.Is(err, state.ErrIdentityNotFound) || errors.Is(err, state.ErrServiceAccountCycle) {
		return 0, "", "", ErrPermission
	}
	if err != nil {
		return 0, "", "", err
	}
	return p.Privilege, p.Enclave, p.Policy, nil
}

// isClusterCommand reports whether cmd acts on the cluster or on enclaves,
// which only SysAdmins may do and no policy can grant.
func isClusterCommand(cmd cmds.Command) bool { return cmd < cmds.KeyCreate }

// IsListCommand reports whether cmd lists, which names no single resource
// and answers with a page of entries.
func IsListCommand(cmd cmds.Command) bool {
	switch cmd {
	case cmds.EnclaveList, cmds.KeyList, cmds.PolicyList, cmds.IdentityList, cmds.KeyListVersions:
		return true
	}
	return false
}

// allows evaluates a policy: deny by default, an explicit deny wins, and an
// allow rule grants what its patterns match. List commands name no resource:
// any allow rule for them grants them, any deny rule denies them. Importing
// a key is a privilege of its own: whoever imports a key knows it, so only
// KEY:IMPORT rules (state.RuleKeyImport) govern it, never KEY:CREATE ones.
// KEY:GENERATE rules govern computing a MAC (KES /v1/key/hmac): both derive
// a secret from the key for the caller, and no policy can name KEY:MAC.
func allows(p state.Policy, cmd cmds.Command, resource string) bool {
	if cmd == cmdKeyMAC {
		cmd = cmds.KeyGenerate
	}
	text := state.RuleText(cmd)
	if IsListCommand(cmd) {
		_, denied := p.Deny[text]
		_, allowed := p.Allow[text]
		return allowed && !denied
	}
	if matchAny(p.Deny[text], resource) {
		return false
	}
	return matchAny(p.Allow[text], resource)
}

// matchAny reports whether one of the patterns matches name: "*" matches
// everything, "prefix*" every name with that prefix, others only themselves.
func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if p == name {
			return true
		}
	}
	return false
}

// Access is who may call a route of an API. Every route declares one in
// its route table, and the API's router asks Admit before any handler runs
// and before any byte of the body is read. The zero value admits nobody,
// so a route that declares nothing serves nobody.
type Access uint8

// The kinds of access a route may declare.
const (
	// Public routes serve anyone, also clients without a certificate.
	Public Access = iota + 1
	// Known routes serve the root identity and every registered identity;
	// what each may do there is decided per command (POST /v1/kms, whose
	// commands are in the body).
	Known
	// SysAdmin routes serve SysAdmins only: the root identity and
	// identities with that privilege.
	SysAdmin
	// Metrics serves anyone while the cluster setting metrics.auth is
	// public, and SysAdmins otherwise.
	Metrics
	// EnclaveMember routes serve SysAdmins and every identity whose home is
	// the request's enclave, whatever its privilege or policy.
	EnclaveMember
	// EnclaveCommand routes serve whoever may run the route's command on
	// the request's resource in its enclave (see authorize).
	EnclaveCommand
)

// Requirement is what a route declares: who may call it and, for
// EnclaveCommand routes, the command it runs.
type Requirement struct {
	Access  Access
	Command cmds.Command
}

// Admit decides whether c may call a route that declares need, in enclave
// and on resource (the key, policy or identity the path names; "" for
// lists). The operations behind the route check again, with what the body
// says; Admit lets the API refuse a caller before it reads a body.
func (s *Service) Admit(c Caller, need Requirement, enclave, resource string) error {
	switch need.Access {
	case Public:
		return nil
	case Known:
		_, _, _, err := s.privilege(c)
		return err
	case Metrics:
		if s.state.Settings()[SettingMetricsAuth] == "public" {
			return nil
		}
		return s.AuthorizeSysAdmin(c)
	case SysAdmin:
		return s.AuthorizeSysAdmin(c)
	case EnclaveMember:
		return s.authorizeEnclave(c, enclave)
	case EnclaveCommand:
		return s.authorize(c, enclaveName(enclave), need.Command, resource)
	}
	return ErrPermission
}
