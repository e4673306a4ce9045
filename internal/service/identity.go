package service

import (
	"context"
	"fmt"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/state"
)

// ParsePrivilege parses a privilege as the wire spells it; "" means User.
func ParsePrivilege(s string) (state.Privilege, error) {
	switch s {
	case "", "User":
		return state.User, nil
	case "Admin":
		return state.Admin, nil
	case "SysAdmin":
		return state.SysAdmin, nil
	default:
		return 0, fmt.Errorf("%w: privilege %q: use SysAdmin, Admin or User", state.ErrInvalidArgument, s)
	}
}

// CreateIdentity creates or replaces an identity, by the rules of
// docs/identities.md. A caller cannot create an identity more powerful than
// itself. A service account becomes a child of the caller and acts with the
// caller's privilege and policy. Re-creating an existing identity exactly as
// it is (same privilege, or a service account of the same caller) needs at
// least the target's rank; changing its privilege, parent or kind needs a
// caller that strictly outranks it.
func (s *Service) CreateIdentity(ctx context.Context, c Caller, enclave, id string, priv state.Privilege, serviceAccount bool, tags map[string]string) error {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.IdentityCreate, id); err != nil {
		return err
	}
	if err := state.ValidIdentity(id); err != nil {
		return err
	}
	if id == s.admin {
		return fmt.Errorf("%w: the root identity cannot be registered", state.ErrInvalidArgument)
	}
	own, err := s.rank(c)
	if err != nil {
		return err
	}
	if serviceAccount {
		priv = own.privilege()
	}
	if priv < own.privilege() {
		return ErrPermission
	}
	if old, err := s.state.Identity(id); err == nil && old.Enclave == enclave {
		same := old.Parent == "" && !serviceAccount && old.Privilege == priv ||
			old.Parent != "" && serviceAccount && old.Parent == c.Identity
		if err := s.mayChange(own, id, same); err != nil {
			return err
		}
	}
	return s.apply(ctx, c, &state.Entry{
		Op: state.OpCreateIdentity, Enclave: enclave, Name: id,
		Identity: &state.IdentityArgs{Privilege: priv, ServiceAccount: serviceAccount, Tags: tags},
	})
}

// DeleteIdentity deletes an identity and its service accounts. The caller
// must rank at least as high as the identity (docs/identities.md).
func (s *Service) DeleteIdentity(ctx context.Context, c Caller, enclave, id string) error {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.IdentityDelete, id); err != nil {
		return err
	}
	own, err := s.rank(c)
	if err != nil {
		return err
	}
	if old, err := s.state.Identity(id); err == nil && old.Enclave == enclave {
		if err := s.mayChange(own, id, true); err != nil {
			return err
		}
	}
	return s.apply(ctx, c, &state.Entry{Op: state.OpDeleteIdentity, Enclave: enclave, Name: id})
}

// rank orders identities for identity management: the lower, the more
// powerful. The root identity ranks above every SysAdmin, so that it alone
// can change a SysAdmin; a registered identity ranks as its privilege (a
// service account as the top of its chain of parents).
type rank int

const rankRoot rank = 0

// privilege is the highest privilege an identity of rank r may hand out.
func (r rank) privilege() state.Privilege { return max(state.Privilege(r), state.SysAdmin) } // #nosec G115 -- a rank is 0 to 3

// rank returns the rank of caller c.
func (s *Service) rank(c Caller) (rank, error) {
	if s.isRoot(c.Identity) {
		return rankRoot, nil
	}
	priv, _, _, err := s.privilege(c)
	return rank(priv), err
}

// mayChange decides whether a caller of rank own may write the existing
// identity id: keep it as it is or delete it (same) when it ranks at least
// as high, change its privilege, parent or kind only when it ranks
// strictly higher.
func (s *Service) mayChange(own rank, id string, same bool) error {
	p, err := s.state.Principal(id)
	if err != nil {
		return ErrPermission // deleted meanwhile, or a chain the state refuses to walk
	}
	target := rank(p.Privilege)
	if own > target || !same && own == target {
		return ErrPermission
	}
	return nil
}

// Identity describes an identity. An empty id means the caller itself,
// which every registered identity may look up, whatever its privilege.
func (s *Service) Identity(c Caller, enclave, id string) (state.Identity, error) {
	if id == "" || id == c.Identity {
		return s.self(c)
	}
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.IdentityGet, id); err != nil {
		return state.Identity{}, err
	}
	i, err := s.state.Identity(id)
	if err != nil {
		return state.Identity{}, err
	}
	if i.Enclave != enclave {
		return state.Identity{}, state.ErrIdentityNotFound
	}
	return i, nil
}

func (s *Service) self(c Caller) (state.Identity, error) {
	if c.Identity == "" {
		return state.Identity{}, ErrPermission
	}
	i, err := s.state.Identity(c.Identity)
	if s.isRoot(c.Identity) && err != nil {
		return state.Identity{ID: c.Identity, Privilege: state.SysAdmin}, nil
	}
	if err != nil {
		return state.Identity{}, ErrPermission
	}
	return i, nil
}

// ListIdentities returns a page of the identities of an enclave.
func (s *Service) ListIdentities(c Caller, enclave, prefix, continueAt string, limit int) ([]state.Identity, string, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.IdentityList, ""); err != nil {
		return nil, "", err
	}
	return s.state.Identities(enclave, prefix, continueAt, limit)
}
