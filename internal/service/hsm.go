package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// The commands of the cluster's HSMs (spec upstream §11). The pinned
// kms-go has neither constants nor texts for them.
const (
	ClusterAddHSM    = cmds.Command(5)
	ClusterRemoveHSM = cmds.Command(6)
)

// Their texts, as audit records spell them.
const (
	CommandClusterAddHSM    = "CLUSTER:ADDHSM"
	CommandClusterRemoveHSM = "CLUSTER:REMOVEHSM"
)

// ErrHSMNotConfigured is returned for an HSM that the node asked to seal
// the root key with is not configured with: only a node that has an HSM
// can seal with it.
var ErrHSMNotConfigured = errors.New("HSM is not configured on this node")

// UseHSMs gives the service the node's HSMs, with which AddHSM seals.
// Call it before the service is used.
func (s *Service) UseHSMs(k *hsm.Keyring) { s.hsms = k }

// AddHSM seals the cluster's root key with the node's HSM name and adds the
// seal to the cluster, so that nodes with that HSM can start. With
// overwrite, an HSM that has a seal already seals the root key again.
// SysAdmins only.
func (s *Service) AddHSM(ctx context.Context, c Caller, name string, overwrite bool) error {
	if err := s.AuthorizeSysAdmin(c); err != nil {
		return err
	}
	if err := hsm.ValidName(name); err != nil {
		return fmt.Errorf("%w: %v", state.ErrInvalidArgument, err)
	}
	h, ok := s.node().Get(name)
	if !ok {
		return fmt.Errorf("%w: %s; this node's HSMs are %s: send the request to a node configured with it", ErrHSMNotConfigured, name, strings.Join(s.node().Names(), ", "))
	}
	seals := s.state.Seals()
	if !overwrite && slices.ContainsFunc(seals, func(x hsm.Seal) bool { return x.HSM == name }) {
		return fmt.Errorf("%w: %s; add it with overwrite (keep add-hsm --overwrite) to seal the root key again", state.ErrHSMExists, name)
	}
	if err := s.completeSeals(ctx, c, seals); err != nil {
		return err
	}
	seal, err := s.node().SealRoot(ctx, h)
	if err != nil {
		return err
	}
	// The seal must hold the cluster's root key: a node whose keyring held
	// another would lock every node on this HSM out.
	plain, err := h.Unseal(ctx, seal.Sealed)
	if err != nil {
		return fmt.Errorf("HSM %s does not unseal what it sealed: %w", name, err)
	}
	same := s.state.IsRootKey(plain)
	clear(plain)
	if !same {
		return errors.New("this node's root key is not the cluster's: restart it, then add the HSM again")
	}
	return s.apply(ctx, c, &state.Entry{Op: state.OpHSM, Name: name, HSM: &state.HSMArgs{Add: []hsm.Seal{seal}, Overwrite: overwrite}})
}

// completeSeals adds the identities to the seals of a cluster created
// before a cluster could have several HSMs, which carry none, for those
// HSMs this node has: nodes on another HSM must recognise the nodes and
// the root API key of that one.
func (s *Service) completeSeals(ctx context.Context, c Caller, seals []hsm.Seal) error {
	var complete []hsm.Seal
	for _, seal := range seals {
		if seal.Node != "" {
			continue
		}
		h, ok := s.node().Get(seal.HSM)
		if !ok {
			continue
		}
		plain, err := h.Unseal(ctx, seal.Sealed)
		if err != nil {
			continue // another HSM of the same name: leave its seal alone
		}
		clear(plain)
		full, err := hsm.Identify(ctx, h, seal.Sealed)
		if err != nil {
			return err
		}
		complete = append(complete, full)
	}
	if len(complete) == 0 {
		return nil
	}
	return s.apply(ctx, c, &state.Entry{Op: state.OpHSM, HSM: &state.HSMArgs{Add: complete, Overwrite: true}})
}

// RemoveHSM removes an HSM's seal of the root key: nodes with only that
// HSM can no longer start. The cluster's last HSM, and one that a node uses
// (or may use: a node that does not answer), is refused. SysAdmins only.
func (s *Service) RemoveHSM(ctx context.Context, c Caller, name string) error {
	if err := s.AuthorizeSysAdmin(c); err != nil {
		return err
	}
	if err := hsm.ValidName(name); err != nil {
		return fmt.Errorf("%w: %v", state.ErrInvalidArgument, err)
	}
	seals := s.state.Seals()
	if !slices.ContainsFunc(seals, func(x hsm.Seal) bool { return x.HSM == name }) {
		return fmt.Errorf("%w: %s; the cluster's HSMs are %s", state.ErrHSMNotFound, name, strings.Join(hsm.Names(seals), ", "))
	}
	if len(seals) == 1 {
		return fmt.Errorf("%w: %s is the cluster's last HSM: without it, no node could unseal the root key", state.ErrHSMInUse, name)
	}
	up, down := s.cluster.ClusterStatus(ctx)
	if len(down) > 0 {
		hosts := make([]string, 0, len(down))
		for _, h := range down {
			hosts = append(hosts, h)
		}
		slices.Sort(hosts)
		return fmt.Errorf("%w: cannot tell which HSM %s uses: it does not answer; start it, or remove it from the cluster, first", state.ErrHSMInUse, strings.Join(hosts, ", "))
	}
	for _, st := range up {
		if st.HSM == name {
			return fmt.Errorf("%w: node %s (%s) uses %s: restart it with another of the cluster's HSMs first", state.ErrHSMInUse, st.ID, st.Host, name)
		}
	}
	return s.apply(ctx, c, &state.Entry{Op: state.OpHSM, Name: name, HSM: &state.HSMArgs{Remove: name}})
}

// node returns the node's keyring; a service without one has no HSMs.
func (s *Service) node() *hsm.Keyring {
	if s.hsms == nil {
		return hsm.NewKeyring()
	}
	return s.hsms
}
