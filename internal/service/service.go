// Package service is Keep's domain layer: it decides who may do what, in one
// place (authorize), and carries out every operation. Reads and crypto are
// served from the local state; writes become state entries that go through
// the cluster. The API packages are thin wrappers around it.
package service

import (
	"context"
	"errors"
	"time"

	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// ErrPermission is returned when a caller may not do what it asked. Its text
// is part of the MinIO KMS wire contract.
var ErrPermission = errors.New("access denied: insufficient permissions")

// Cluster is the write path and the cluster's membership: Apply replicates
// an entry and returns the outcome of applying it.
type Cluster interface {
	Apply(ctx context.Context, e *state.Entry) error
	AddNode(ctx context.Context, host string) error
	RemoveNode(ctx context.Context, host string, deleteCluster bool) error
	Edit(ctx context.Context, remove []string) error
	Restart(ctx context.Context, all bool) error
	ClusterStatus(ctx context.Context) (up map[int]cluster.NodeStatus, down map[int]string)
	// AwaitReads returns once this node's state holds every acknowledged
	// write, within a short bound, and fails when the node must not serve
	// reads: it has been cut off from the leader for longer than it may
	// serve from its last state, or it left its cluster.
	AwaitReads() error
}

// Caller is who sent a request: the identity of its client certificate, or
// "" when it sent none.
type Caller struct {
	Identity string
}

// Service carries out Keep's operations on behalf of callers.
type Service struct {
	state   *state.State
	cluster Cluster
	admin   string // this node's own root identity, unless the cluster names an admin
	// hsmRoots makes the root API keys of all the cluster's HSMs roots,
	// as this node's own is: set when the node's own root is the one its
	// HSM derives, not its config file's admin.identity.
	hsmRoots bool
	hsms     *hsm.Keyring // the node's HSMs, for AddHSM
}

// TrustHSMRoots makes the root API key of every HSM that seals the
// cluster's root key a root on this node, as the node's own HSM's is, so
// that the root API key works on every node while the cluster moves from
// one HSM to another. Call it before the service is used.
func (s *Service) TrustHSMRoots() { s.hsmRoots = true }

// New returns a Service that reads st, writes through c, and treats the
// identity admin (h1:…) as the root SysAdmin while the cluster-wide
// setting admin.identity names no other.
func New(st *state.State, c Cluster, admin string) *Service {
	return &Service{state: st, cluster: c, admin: admin}
}

// isRoot reports whether id is a root identity, SysAdmin whether
// registered or not: the cluster's admin (SettingAdminIdentity) if it names
// one; else this node's own (the HSM-derived root API key, or its config
// file's admin.identity) and, if the node trusts them, the root API keys of
// the cluster's HSMs. While the cluster names an admin, every other root
// is an unknown identity like any other.
func (s *Service) isRoot(id string) bool {
	if id == "" {
		return false
	}
	if a := s.state.Admin(); a != "" {
		return id == a
	}
	return id == s.admin || s.hsmRoots && s.state.IsHSMRoot(id)
}

// enclaveName maps the enclave of a request to a state enclave: requests
// that name none act in the default enclave.
func enclaveName(enclave string) string {
	if enclave == "" {
		return state.DefaultEnclave
	}
	return enclave
}

// apply stamps an entry with its time and author and replicates it.
func (s *Service) apply(ctx context.Context, c Caller, e *state.Entry) error {
	if e.Time.IsZero() { // an entry that depends on its time sets it
		e.Time = time.Now().UTC()
	}
	e.By = c.Identity
	return s.cluster.Apply(ctx, e)
}
