package service

import (
	"context"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/state"
)

// CreateEnclave creates an enclave.
func (s *Service) CreateEnclave(ctx context.Context, c Caller, name string) error {
	if err := s.admit(c, "", cmds.EnclaveCreate, name); err != nil {
		return err
	}
	return s.apply(ctx, c, &state.Entry{Op: state.OpCreateEnclave, Name: name})
}

// DeleteEnclave deletes an enclave with its keys, policies and identities.
func (s *Service) DeleteEnclave(ctx context.Context, c Caller, name string) error {
	if err := s.admit(c, "", cmds.EnclaveDelete, name); err != nil {
		return err
	}
	return s.apply(ctx, c, &state.Entry{Op: state.OpDeleteEnclave, Name: name})
}

// EnclaveStatus describes an enclave.
func (s *Service) EnclaveStatus(c Caller, name string) (state.Enclave, error) {
	if err := s.admit(c, "", cmds.EnclaveStatus, name); err != nil {
		return state.Enclave{}, err
	}
	return s.state.Enclave(name)
}

// ListEnclaves returns a page of enclaves and the name that starts the next.
func (s *Service) ListEnclaves(c Caller, prefix, continueAt string, limit int) ([]state.Enclave, string, error) {
	if err := s.admit(c, "", cmds.EnclaveList, ""); err != nil {
		return nil, "", err
	}
	list, next := s.state.Enclaves(prefix, continueAt, limit)
	return list, next, nil
}
