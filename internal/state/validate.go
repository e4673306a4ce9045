package state

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"

	"github.com/keep-kms/keep/internal/crypto"
)

// validate checks every record of a snapshot before any of it is applied:
// names, privileges, identities and their parent links, policy
// references and rule commands. A backup is user input, so nothing in it is
// taken on trust; key material is checked when it is unsealed.
func (snap *snapshot) validate() error {
	policies := map[string]map[string]bool{} // enclave → policy names
	for _, se := range snap.Enclaves {
		if err := ValidEnclaveName(se.Name); err != nil {
			return err
		}
		if policies[se.Name] != nil {
			return fmt.Errorf("%w: enclave %q appears twice", ErrInvalidArgument, se.Name)
		}
		names := map[string]bool{}
		policies[se.Name] = names
		if err := validateKeys(se.Name, se.Keys); err != nil {
			return err
		}
		for _, p := range se.Policies {
			if err := validatePolicy(&p); err != nil {
				return fmt.Errorf("enclave %q: %w", se.Name, err)
			}
			if names[p.Name] {
				return fmt.Errorf("%w: enclave %q: policy %q appears twice", ErrInvalidArgument, se.Name, p.Name)
			}
			names[p.Name] = true
		}
	}

	ids := make(map[string]*Identity, len(snap.Identities))
	for k := range snap.Identities {
		i := &snap.Identities[k]
		if err := ValidIdentity(i.ID); err != nil {
			return err
		}
		if ids[i.ID] != nil {
			return fmt.Errorf("%w: identity %s appears twice", ErrInvalidArgument, i.ID)
		}
		ids[i.ID] = i
		if i.Privilege < SysAdmin || i.Privilege > User {
			return fmt.Errorf("%w: identity %s: invalid privilege %d", ErrInvalidArgument, i.ID, i.Privilege)
		}
		names, ok := policies[i.Enclave]
		if !ok {
			return fmt.Errorf("%w: identity %s: enclave %q does not exist", ErrInvalidArgument, i.ID, i.Enclave)
		}
		if i.Policy != "" && !names[i.Policy] {
			return fmt.Errorf("%w: identity %s: policy %q does not exist in enclave %q", ErrInvalidArgument, i.ID, i.Policy, i.Enclave)
		}
	}
	for k := range snap.Identities {
		if err := validateLinks(&snap.Identities[k], ids); err != nil {
			return err
		}
	}
	return nil
}

func validateKeys(enclave string, keys []snapshotKey) error {
	seen := map[string]bool{}
	for _, k := range keys {
		if err := ValidKeyName(k.Name); err != nil {
			return fmt.Errorf("enclave %q: %w", enclave, err)
		}
		if seen[k.Name] {
			return fmt.Errorf("%w: enclave %q: key %q appears twice", ErrInvalidArgument, enclave, k.Name)
		}
		seen[k.Name] = true
		if k.RotateEvery < 0 {
			return fmt.Errorf("%w: enclave %q: key %q: negative rotation period", ErrInvalidArgument, enclave, k.Name)
		}
		versions := map[uint32]bool{}
		for _, v := range k.Versions {
			// Next is the number the next version gets: a version at or
			// above it would be overwritten by the next rotation.
			if v.Version == 0 || v.Version >= k.Next || versions[v.Version] {
				return fmt.Errorf("%w: enclave %q: key %q: invalid or repeated version %d (next %d)", ErrInvalidArgument, enclave, k.Name, v.Version, k.Next)
			}
			versions[v.Version] = true
			if v.KES != nil && v.KES.Implicit && v.Type != crypto.AES256 {
				return fmt.Errorf("%w: enclave %q: key %q: %w: a KES key without algorithm is AES256", ErrInvalidArgument, enclave, k.Name, errKESArgs)
			}
		}
	}
	return nil
}

func validatePolicy(p *Policy) error {
	if err := ValidPolicyName(p.Name); err != nil {
		return err
	}
	for _, rules := range []map[string][]string{p.Allow, p.Deny} {
		for text, patterns := range rules {
			cmd, err := ParseRuleCommand(text)
			if err != nil {
				return fmt.Errorf("policy %q: %w", p.Name, err)
			}
			if RuleText(cmd) != text {
				return fmt.Errorf("%w: policy %q: command %q is not spelled %q", ErrInvalidArgument, p.Name, text, RuleText(cmd))
			}
			if slices.Contains(patterns, "") {
				return fmt.Errorf("%w: policy %q: empty pattern for %s", ErrInvalidArgument, p.Name, text)
			}
		}
	}
	return nil
}

// validateLinks checks that i's parent and service accounts point back at
// it, within one enclave, and that its chain of parents ends within
// MaxServiceAccountDepth steps.
func validateLinks(i *Identity, ids map[string]*Identity) error {
	if i.Parent != "" {
		p, ok := ids[i.Parent]
		switch {
		case !ok:
			return fmt.Errorf("%w: identity %s: parent %s does not exist", ErrInvalidArgument, i.ID, i.Parent)
		case p.Enclave != i.Enclave:
			return fmt.Errorf("%w: identity %s: parent %s lives in another enclave", ErrInvalidArgument, i.ID, i.Parent)
		case !slices.Contains(p.ServiceAccounts, i.ID):
			return fmt.Errorf("%w: identity %s: parent %s does not list it as a service account", ErrInvalidArgument, i.ID, i.Parent)
		}
	}
	for k, sa := range i.ServiceAccounts {
		if c, ok := ids[sa]; !ok || c.Parent != i.ID || slices.Contains(i.ServiceAccounts[:k], sa) {
			return fmt.Errorf("%w: identity %s: service account %s does not exist, is listed twice or has another parent", ErrInvalidArgument, i.ID, sa)
		}
	}
	for step, id := 0, i.Parent; id != ""; step++ {
		p, ok := ids[id]
		if !ok {
			return fmt.Errorf("%w: identity %s: parent %s does not exist", ErrInvalidArgument, i.ID, id)
		}
		if step == MaxServiceAccountDepth {
			return fmt.Errorf("identity %s: %w", i.ID, ErrServiceAccountCycle)
		}
		id = p.Parent
	}
	return nil
}

// repairServiceAccounts brings the service-account links an older version
// could write into the shape validate requires, deterministically, so that
// every node restoring the same snapshot holds the same identities. It
// drops from each list of service accounts the identities that no longer
// exist or have another parent (left behind when a service account was
// deleted with another tree, or overwritten), and breaks each cycle of
// parents (one identity made its own parent a service account) at the
// identity whose parent link was written last (of equal times, the smallest
// ID), as applying the log again
// would refuse exactly that write; that identity keeps its privilege and
// policy. It logs what it changed and does nothing to a snapshot with
// repeated identities, which validate refuses.
func (snap *snapshot) repairServiceAccounts() {
	ids := make(map[string]*Identity, len(snap.Identities))
	for k := range snap.Identities {
		i := &snap.Identities[k]
		if ids[i.ID] != nil {
			return
		}
		ids[i.ID] = i
	}
	for k := range snap.Identities {
		i := &snap.Identities[k]
		n := len(i.ServiceAccounts)
		var kept []string
		for _, sa := range i.ServiceAccounts {
			if c, ok := ids[sa]; ok && c.Parent == i.ID && !slices.Contains(kept, sa) {
				kept = append(kept, sa)
			}
		}
		if len(kept) != n {
			slog.Warn("snapshot: dropped stale service accounts of an identity", "identity", i.ID, "dropped", n-len(kept))
			i.ServiceAccounts = kept
		}
	}
	for k := range snap.Identities {
		for cycle := cycleAbove(&snap.Identities[k], ids); cycle != nil; cycle = cycleAbove(&snap.Identities[k], ids) {
			last := slices.MaxFunc(cycle, func(a, b *Identity) int {
				return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(b.ID, a.ID))
			})
			members := make([]string, 0, len(cycle))
			for _, c := range cycle {
				members = append(members, c.ID)
			}
			slog.Warn("snapshot: broke a cycle of service accounts", "identities", members, "detached", last.ID, "from", last.Parent)
			p := ids[last.Parent]
			p.ServiceAccounts = slices.DeleteFunc(p.ServiceAccounts, func(id string) bool { return id == last.ID })
			last.Parent = ""
		}
	}
}

// cycleAbove returns the identities of a cycle that i's chain of parents
// runs into, or nil when the chain ends (at an identity without a parent,
// or at a parent that does not exist, which validate refuses).
func cycleAbove(i *Identity, ids map[string]*Identity) []*Identity {
	var path []*Identity
	for cur := i; ; {
		if k := slices.Index(path, cur); k >= 0 {
			return path[k:]
		}
		path = append(path, cur)
		next, ok := ids[cur.Parent]
		if cur.Parent == "" || !ok {
			return nil
		}
		cur = next
	}
}
