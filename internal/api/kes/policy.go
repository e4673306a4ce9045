package kes

import (
	"strings"
	"time"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/state"
)

// policyName is the policy a request names, if it is a valid KES name.
func policyName(r *request) (string, error) {
	if !validName(r.resource) {
		return "", errPolicyName(r.resource)
	}
	return r.resource, nil
}

// policyInfo is the reply of /v1/policy/describe.
type policyInfo struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// policyRules is the reply of /v1/policy/read.
type policyRules struct {
	Name      string              `json:"name"`
	Allow     map[string]struct{} `json:"allow,omitempty"`
	Deny      map[string]struct{} `json:"deny,omitempty"`
	CreatedAt time.Time           `json:"created_at"`
	CreatedBy string              `json:"created_by,omitempty"`
}

// describePolicy serves GET /v1/policy/describe/{name}.
func (a *API) describePolicy(r *request) (any, error) {
	name, err := policyName(r)
	if err != nil {
		return nil, err
	}
	p, err := a.svc.PolicyStatus(r.caller, a.enclave, name)
	if err != nil {
		return nil, err
	}
	return policyInfo{Name: p.Name, CreatedAt: p.CreatedAt, CreatedBy: identity.Hex(p.CreatedBy)}, nil
}

// readPolicy serves GET /v1/policy/read/{name}: the policy's rules as the
// KES path patterns they grant (see kesRules).
func (a *API) readPolicy(r *request) (any, error) {
	name, err := policyName(r)
	if err != nil {
		return nil, err
	}
	p, err := a.svc.Policy(r.caller, a.enclave, name)
	if err != nil {
		return nil, err
	}
	return policyRules{
		Name:      p.Name,
		Allow:     kesRules(p.Allow),
		Deny:      kesRules(p.Deny),
		CreatedAt: p.CreatedAt,
		CreatedBy: identity.Hex(p.CreatedBy),
	}, nil
}

// listPolicies serves GET /v1/policy/list/{pattern}: every matching name.
func (a *API) listPolicies(r *request) (any, error) {
	if !validPattern(r.resource) {
		return nil, errPattern(r.resource)
	}
	names, err := listAll(func(continueAt string) ([]state.Policy, string, error) {
		return a.svc.ListPolicies(r.caller, a.enclave, listPrefix(r.resource), continueAt, state.MaxPageSize)
	}, func(p state.Policy) string { return p.Name })
	if err != nil {
		return nil, err
	}
	return struct {
		Names      []string `json:"names"`
		ContinueAt string   `json:"continue_at"`
	}{names, ""}, nil
}

// kesRules spells Keep policy rules (command → resource patterns) as the
// KES path patterns they grant or deny: a rule for CMD with pattern P
// becomes route+P for every KES route whose rule is CMD (KEY:GENERATE
// also yields /v1/key/hmac/P, KEY:CREATE also /v1/key/import/P). Keep and
// KES match patterns alike: "*" at the end matches any rest. List
// commands name no resource, so any rule for them becomes route+"*".
// Identity patterns naming one h1: identity are spelled in hex. Commands
// without a KES route (KEY:LISTVERSIONS, POLICY:CREATE, IDENTITY:CREATE …)
// have no KES spelling and are left out.
func kesRules(rules map[string][]string) map[string]struct{} {
	out := map[string]struct{}{}
	for i := range routes {
		rt := &routes[i]
		patterns, ok := rules[rt.rule]
		if !ok || rt.rule == "" || !strings.HasSuffix(rt.path, "/") {
			continue
		}
		switch rt.rule {
		case cmds.KeyList.String(), cmds.PolicyList.String(), cmds.IdentityList.String():
			out[rt.path+"*"] = struct{}{}
			continue
		}
		for _, p := range patterns {
			if rt.rule == cmds.IdentityGet.String() {
				p = identity.Hex(p)
			}
			out[rt.path+p] = struct{}{}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
