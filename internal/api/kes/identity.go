package kes

import (
	"slices"
	"strings"
	"time"

	"github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/state"
)

// identityInfo is the reply of /v1/identity/describe and, with Identity
// and the rules of its policy, of /v1/identity/self/describe.
type identityInfo struct {
	Identity  string              `json:"identity,omitempty"`
	Admin     bool                `json:"admin,omitempty"`
	Policy    string              `json:"policy,omitempty"`
	CreatedAt time.Time           `json:"created_at"`
	CreatedBy string              `json:"created_by,omitempty"`
	Children  []string            `json:"children,omitempty"`
	Allow     map[string]struct{} `json:"allow,omitempty"`
	Deny      map[string]struct{} `json:"deny,omitempty"`
}

// info describes an identity as KES does. Admin is what KES calls an
// identity that no policy restricts: in Keep, SysAdmins (the root identity
// among them) and Admins.
func (a *API) info(i state.Identity) identityInfo {
	info := identityInfo{
		Admin:     i.Privilege == state.SysAdmin || i.Privilege == state.Admin,
		Policy:    i.Policy,
		CreatedAt: i.CreatedAt,
		CreatedBy: identity.Hex(i.CreatedBy),
	}
	if info.CreatedAt.IsZero() { // the root identity exists since the server started
		info.CreatedAt = a.started.UTC()
	}
	for _, c := range i.ServiceAccounts {
		info.Children = append(info.Children, identity.Hex(c))
	}
	return info
}

// identityOf is the identity a path names: in h1: spelling when it is a
// hex identity. A name that is no hex identity is looked up as it is, and
// is not found: after authorization, as for any other identity.
func identityOf(resource string) string {
	if h1, ok := identity.FromHex(resource); ok {
		return h1
	}
	return resource
}

// describeIdentity serves GET /v1/identity/describe/{hex identity}.
func (a *API) describeIdentity(r *request) (any, error) {
	if !validName(r.resource) {
		return nil, errIdentity(r.resource)
	}
	i, err := a.svc.Identity(r.caller, a.enclave, identityOf(r.resource))
	if err != nil {
		return nil, err
	}
	return a.info(i), nil
}

// describeSelf serves GET /v1/identity/self/describe: every registered
// identity may describe itself, with the rules of the policy it acts with.
func (a *API) describeSelf(r *request) (any, error) {
	i, p, err := a.svc.Self(r.caller)
	if err != nil {
		return nil, err
	}
	info := a.info(i)
	info.Identity = identity.Hex(r.caller.Identity)
	if p.Name != "" {
		info.Policy = p.Name
		info.Allow, info.Deny = kesRules(p.Allow), kesRules(p.Deny)
	}
	return info, nil
}

// listIdentities serves GET /v1/identity/list/{pattern}: the identities of
// the enclave, in hex, that match the pattern. The root identity belongs
// to no enclave and is not listed.
func (a *API) listIdentities(r *request) (any, error) {
	if !validPattern(r.resource) {
		return nil, errPattern(r.resource)
	}
	// h1: and hex spellings do not share prefixes: list all, then filter.
	ids, err := listAll(func(continueAt string) ([]state.Identity, string, error) {
		return a.svc.ListIdentities(r.caller, a.enclave, "", continueAt, state.MaxPageSize)
	}, func(i state.Identity) string { return identity.Hex(i.ID) })
	if err != nil {
		return nil, err
	}
	prefix := listPrefix(r.resource)
	ids = slices.DeleteFunc(ids, func(id string) bool { return !strings.HasPrefix(id, prefix) })
	slices.Sort(ids)
	return struct {
		Identities []string `json:"identities"`
		ContinueAt string   `json:"continue_at"`
	}{ids, ""}, nil
}
