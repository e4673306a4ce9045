package state

import (
	"fmt"
	"slices"
)

// MaxServiceAccountDepth bounds the chain of parents above an identity: a
// service account of a service account … at most this many links deep.
// Every walk up the chain stops after this many steps, so that no state,
// however it came about, can make a request or an apply loop.
const MaxServiceAccountDepth = 16

// ErrServiceAccountCycle reports parent links that do not end in an
// identity without a parent within MaxServiceAccountDepth steps: a cycle,
// or a chain too deep to be walked.
var ErrServiceAccountCycle = fmt.Errorf("%w: service account chain is cyclic or deeper than %d", ErrInvalidArgument, MaxServiceAccountDepth)

// Principal is what an identity acts as: the identity at the top of its
// chain of parents, whose privilege, enclave and policy a service account
// borrows.
type Principal struct {
	Privilege Privilege
	Enclave   string
	Policy    string
}

// Principal returns what the identity id acts as: itself, or for a service
// account the top of its chain of parents. It fails with
// ErrIdentityNotFound when id or a parent is missing, and with
// ErrServiceAccountCycle when the chain does not end within
// MaxServiceAccountDepth steps (a cycle written by an older version).
func (s *State) Principal(id string) (Principal, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	top, err := s.topLocked(id)
	if err != nil {
		return Principal{}, err
	}
	return Principal{Privilege: top.Privilege, Enclave: top.Enclave, Policy: top.Policy}, nil
}

// topLocked walks from id up to the identity without a parent, in at most
// MaxServiceAccountDepth steps. The caller holds s.mu.
func (s *State) topLocked(id string) (*Identity, error) {
	i, ok := s.identities[id]
	for step := 0; ok; step++ {
		if i.Parent == "" {
			return i, nil
		}
		if step == MaxServiceAccountDepth {
			return nil, fmt.Errorf("identity %s: %w", id, ErrServiceAccountCycle)
		}
		i, ok = s.identities[i.Parent]
	}
	return nil, ErrIdentityNotFound
}

// chainLocked checks that child may become a service account of parent:
// child is not parent nor above it (which would close a cycle), and parent's
// chain ends within MaxServiceAccountDepth steps. It returns the number of
// parents child would have. The caller holds s.mu.
func (s *State) chainLocked(parent, child string) (depth int, err error) {
	for id := parent; id != ""; depth++ {
		if id == child {
			return 0, fmt.Errorf("%w: %s is above %s already: service accounts form a tree, not a cycle", ErrInvalidArgument, child, parent)
		}
		if depth == MaxServiceAccountDepth {
			return 0, fmt.Errorf("identity %s: %w", parent, ErrServiceAccountCycle)
		}
		i, ok := s.identities[id]
		if !ok {
			return 0, ErrIdentityNotFound
		}
		id = i.Parent
	}
	return depth, nil
}

// heightLocked returns the number of levels of service accounts below id,
// walking at most MaxServiceAccountDepth levels. The caller holds s.mu.
func (s *State) heightLocked(id string) (int, error) {
	level := []string{id}
	for height := 0; ; height++ {
		var below []string
		for _, p := range level {
			if i, ok := s.identities[p]; ok {
				below = append(below, i.ServiceAccounts...)
			}
		}
		if len(below) == 0 {
			return height, nil
		}
		if height == MaxServiceAccountDepth {
			return 0, fmt.Errorf("identity %s: %w", id, ErrServiceAccountCycle)
		}
		level = below
	}
}

// deleteTreeLocked removes id and, transitively, its service accounts. It
// walks a work list, not the call stack, and visits each identity once, so
// that neither a deep tree nor a cycle left by an older version can make it
// overflow or loop. The caller holds s.mu.
func (s *State) deleteTreeLocked(id string) {
	work := []string{id}
	for len(work) > 0 {
		id, work = work[len(work)-1], work[:len(work)-1]
		i, ok := s.identities[id]
		if !ok {
			continue // already deleted: a cycle, or listed twice
		}
		s.dropIdentity(id)
		work = append(work, i.ServiceAccounts...)
	}
}

// unlinkLocked removes child from the service accounts of its parent, if
// it has one. The caller holds s.mu.
func (s *State) unlinkLocked(child *Identity) {
	if p, ok := s.identities[child.Parent]; ok {
		p.ServiceAccounts = slices.DeleteFunc(p.ServiceAccounts, func(id string) bool { return id == child.ID })
	}
}
