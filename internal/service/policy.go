package service

import (
	"context"
	"slices"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/state"
)

// CreatePolicy creates or replaces a policy. Rules map command texts
// ("KEY:GENERATE", any case) to resource patterns.
func (s *Service) CreatePolicy(ctx context.Context, c Caller, enclave, name string, allow, deny map[string][]string) error {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.PolicyCreate, name); err != nil {
		return err
	}
	if err := state.ValidPolicyName(name); err != nil {
		return err
	}
	a, err := normalizeRules(allow)
	if err != nil {
		return err
	}
	d, err := normalizeRules(deny)
	if err != nil {
		return err
	}
	return s.apply(ctx, c, &state.Entry{
		Op: state.OpCreatePolicy, Enclave: enclave, Name: name,
		Policy: &state.PolicyArgs{Allow: a, Deny: d},
	})
}

// normalizeRules spells every command as policies store it
// (state.RuleText), drops empty patterns, sorts them, and refuses commands
// no policy may grant (state.ParseRuleCommand).
func normalizeRules(rules map[string][]string) (map[string][]string, error) {
	out := make(map[string][]string, len(rules))
	for text, patterns := range rules {
		cmd, err := state.ParseRuleCommand(text)
		if err != nil {
			return nil, err
		}
		ps := out[state.RuleText(cmd)]
		for _, p := range patterns {
			if p != "" && !slices.Contains(ps, p) {
				ps = append(ps, p)
			}
		}
		slices.Sort(ps)
		out[state.RuleText(cmd)] = ps
	}
	return out, nil
}

// DeletePolicy deletes a policy and unassigns it from its identities.
func (s *Service) DeletePolicy(ctx context.Context, c Caller, enclave, name string) error {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.PolicyDelete, name); err != nil {
		return err
	}
	return s.apply(ctx, c, &state.Entry{Op: state.OpDeletePolicy, Enclave: enclave, Name: name})
}

// AssignPolicy assigns a policy to a User identity of the same enclave.
func (s *Service) AssignPolicy(ctx context.Context, c Caller, enclave, identity, policy string) error {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.PolicyAssign, policy); err != nil {
		return err
	}
	return s.apply(ctx, c, &state.Entry{Op: state.OpAssignPolicy, Enclave: enclave, Name: identity, Assign: policy})
}

// Policy returns a policy with its rules.
func (s *Service) Policy(c Caller, enclave, name string) (state.Policy, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.PolicyGet, name); err != nil {
		return state.Policy{}, err
	}
	return s.state.Policy(enclave, name)
}

// PolicyStatus returns a policy; the API shows only its name and creation.
func (s *Service) PolicyStatus(c Caller, enclave, name string) (state.Policy, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.PolicyStatus, name); err != nil {
		return state.Policy{}, err
	}
	return s.state.Policy(enclave, name)
}

// ListPolicies returns a page of policies.
func (s *Service) ListPolicies(c Caller, enclave, prefix, continueAt string, limit int) ([]state.Policy, string, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.PolicyList, ""); err != nil {
		return nil, "", err
	}
	return s.state.Policies(enclave, prefix, continueAt, limit)
}
