package service

import (
	"context"
	"io"

	"github.com/keep-kms/keep/internal/state"
)

// Backup writes a snapshot of enclaves, keys, policies and identities to w,
// key material sealed as it is at rest, authenticated under the root key.
// Cluster membership is not part of it.
func (s *Service) Backup(c Caller, w io.Writer) error {
	if err := s.AuthorizeSysAdmin(c); err != nil {
		return err
	}
	return s.state.Backup(w)
}

// Restore replaces the state of a fresh cluster with a backup. The backup
// must come from a cluster with the same HSM key, and be authentic; with
// legacy, a backup of an earlier version of Keep (which carries no MAC) is
// accepted too, because the operator vouches for it.
func (s *Service) Restore(ctx context.Context, c Caller, backup []byte, legacy bool) error {
	if err := s.AuthorizeSysAdmin(c); err != nil {
		return err
	}
	return s.apply(ctx, c, &state.Entry{Op: state.OpRestore, Restore: backup, RestoreLegacy: legacy})
}
