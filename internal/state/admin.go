package state

import (
	"fmt"
)

// SettingAdminIdentity is the cluster-wide setting that names the cluster's
// admin: a registered SysAdmin identity that replaces, on every node, the
// root identity a node has of its own (the HSM-derived root API key, or the
// admin.identity of its config file). Unset, every node uses its own.
//
// The state machine keeps the cluster from locking itself out: the admin
// must be a registered SysAdmin identity that is not a service account
// when the setting is applied, and while it is the admin it cannot be
// deleted or replaced, nor its enclave deleted. The checks run when an
// entry is applied, so that every node decides alike and no race between
// two writes can leave the setting naming an identity that is gone.
const SettingAdminIdentity = "admin.identity"

// Admin returns the cluster's admin identity (SettingAdminIdentity), or ""
// when none is set. It takes no lock: it is asked on every request.
func (s *State) Admin() string {
	if a := s.admin.Load(); a != nil {
		return *a
	}
	return ""
}

// checkAdmin reports whether id may become the cluster's admin; the caller
// holds s.mu.
func (s *State) checkAdmin(id string) error {
	if err := ValidIdentity(id); err != nil {
		return fmt.Errorf("%s: %w", SettingAdminIdentity, err)
	}
	i, ok := s.identities[id]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s: identity %s is not registered: register it as a SysAdmin first, so that the cluster cannot be locked out",
			ErrInvalidArgument, SettingAdminIdentity, id)
	case i.Privilege != SysAdmin:
		return fmt.Errorf("%w: %s: identity %s is %s, not SysAdmin", ErrInvalidArgument, SettingAdminIdentity, id, i.Privilege)
	case i.Parent != "":
		return fmt.Errorf("%w: %s: identity %s is a service account of %s: the admin must stand on its own",
			ErrInvalidArgument, SettingAdminIdentity, id, i.Parent)
	}
	return nil
}

// protectAdmin refuses a write (what) that would delete or replace the
// cluster's admin identity: touches tells whether the write reaches it.
// The caller holds s.mu.
func (s *State) protectAdmin(what string, touches func(admin *Identity) bool) error {
	id := s.settings[SettingAdminIdentity]
	if id == "" {
		return nil
	}
	admin, ok := s.identities[id]
	if !ok || !touches(admin) {
		return nil
	}
	return fmt.Errorf("%w: %s is refused: %s is the cluster's admin (%s); set %s to another identity, or reset it, first",
		ErrInvalidArgument, what, id, SettingAdminIdentity, SettingAdminIdentity)
}
