package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"aead.dev/mtls"

	"github.com/keep-kms/keep/internal/state"
)

func newID(t testing.TB) string {
	t.Helper()
	k, err := mtls.GenerateKeyEdDSA(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k.Identity().String()
}

// identityFixture is a service on an initialized state with an enclave
// "E", a policy "ids" there that allows every IDENTITY command and
// KEY:CREATE, and a policy "imp" that allows KEY:IMPORT.
type identityFixture struct {
	t    *testing.T
	svc  *Service
	st   *state.State
	root Caller
}

func newIdentityFixture(t *testing.T) *identityFixture {
	t.Helper()
	st, c := initializedState(t)
	f := &identityFixture{t: t, st: st, root: Caller{Identity: newID(t)}}
	f.svc = New(st, c, f.root.Identity)
	f.apply(&state.Entry{Op: state.OpCreateEnclave, Name: "E"})
	ids := map[string][]string{}
	for _, cmd := range []string{"IDENTITY:CREATE", "IDENTITY:DELETE", "IDENTITY:STATUS", "IDENTITY:LIST", "KEY:CREATE"} {
		ids[cmd] = []string{"*"}
	}
	f.apply(&state.Entry{Op: state.OpCreatePolicy, Enclave: "E", Name: "ids", Policy: &state.PolicyArgs{Allow: ids}})
	f.apply(&state.Entry{Op: state.OpCreatePolicy, Enclave: "E", Name: "imp", Policy: &state.PolicyArgs{Allow: map[string][]string{"KEY:IMPORT": {"*"}}}})
	return f
}

func (f *identityFixture) apply(e *state.Entry) {
	f.t.Helper()
	if err := (localCluster{f.st}).Apply(context.Background(), e); err != nil {
		f.t.Fatalf("apply %s %s: %v", e.Op, e.Name, err)
	}
}

// add registers a new identity in E with privilege p (a User gets policy),
// created by the root.
func (f *identityFixture) add(p state.Privilege, policy string) Caller {
	f.t.Helper()
	c := Caller{Identity: newID(f.t)}
	f.apply(&state.Entry{Op: state.OpCreateIdentity, By: f.root.Identity, Enclave: "E", Name: c.Identity, Identity: &state.IdentityArgs{Privilege: p}})
	if policy != "" {
		f.apply(&state.Entry{Op: state.OpAssignPolicy, Enclave: "E", Name: c.Identity, Assign: policy})
	}
	return c
}

// serviceAccount registers a new service account of parent.
func (f *identityFixture) serviceAccount(parent Caller) Caller {
	f.t.Helper()
	c := Caller{Identity: newID(f.t)}
	f.apply(&state.Entry{Op: state.OpCreateIdentity, By: parent.Identity, Enclave: "E", Name: c.Identity, Identity: &state.IdentityArgs{ServiceAccount: true}})
	return c
}

// caller makes the caller of a matrix row.
func (f *identityFixture) caller(kind string) Caller {
	switch kind {
	case "root":
		return f.root
	case "SysAdmin":
		return f.add(state.SysAdmin, "")
	case "Admin":
		return f.add(state.Admin, "")
	case "User":
		return f.add(state.User, "ids")
	case "service account of Admin":
		return f.serviceAccount(f.add(state.Admin, ""))
	}
	f.t.Fatalf("unknown caller %s", kind)
	return Caller{}
}

// TestIdentityMatrix checks every cell of the table in
// docs/identities.md: each caller against each target privilege and
// operation, on a fresh state each.
func TestIdentityMatrix(t *testing.T) {
	ops := []string{"create", "unchanged", "overwrite", "service account", "delete", "describe", "list"}
	// want: one letter per op: y allowed, n 403, i 400 (invalid argument).
	tests := []struct {
		caller, target string
		want           string
	}{
		{"root", "SysAdmin", "yyyiyyy"},
		{"root", "Admin", "yyyiyyy"},
		{"root", "User", "yyyiyyy"},
		{"SysAdmin", "SysAdmin", "yynnyyy"},
		{"SysAdmin", "Admin", "yyyyyyy"},
		{"SysAdmin", "User", "yyyyyyy"},
		{"Admin", "SysAdmin", "nnnnnyy"},
		{"Admin", "Admin", "yynnyyy"},
		{"Admin", "User", "yyyyyyy"},
		{"User", "SysAdmin", "nnnnnyy"},
		{"User", "Admin", "nnnnnyy"},
		{"User", "User", "yynnyyy"},
		// A service account ranks as its parent, as caller and as target.
		{"service account of Admin", "SysAdmin", "nnnnnyy"},
		{"service account of Admin", "Admin", "yynnyyy"},
		{"service account of Admin", "User", "yyyyyyy"},
		{"Admin", "service account of SysAdmin", "nnnnnyy"},
		{"Admin", "service account of Admin", "--nnyyy"},
		{"SysAdmin", "service account of Admin", "--yyyyy"},
	}
	privileges := map[string]state.Privilege{"SysAdmin": state.SysAdmin, "Admin": state.Admin, "User": state.User}
	ctx := context.Background()
	for _, tt := range tests {
		for k, op := range ops {
			want := tt.want[k]
			if want == '-' {
				continue
			}
			t.Run(fmt.Sprintf("%s/%s/%s", tt.caller, tt.target, op), func(t *testing.T) {
				f := newIdentityFixture(t)
				c := f.caller(tt.caller)
				var target Caller
				var priv state.Privilege
				if parent, ok := strings.CutPrefix(tt.target, "service account of "); ok {
					priv = privileges[parent]
					target = f.serviceAccount(f.add(priv, ""))
				} else {
					priv = privileges[tt.target]
					if op != "create" {
						policy := ""
						if priv == state.User {
							policy = "imp"
						}
						target = f.add(priv, policy)
					}
				}
				other := state.User // overwrite changes the privilege
				if priv == state.User {
					other = state.Admin
				}
				var err error
				switch op {
				case "create":
					err = f.svc.CreateIdentity(ctx, c, "E", newID(t), priv, false, nil)
				case "unchanged":
					err = f.svc.CreateIdentity(ctx, c, "E", target.Identity, priv, false, nil)
				case "overwrite":
					err = f.svc.CreateIdentity(ctx, c, "E", target.Identity, other, false, nil)
				case "service account":
					err = f.svc.CreateIdentity(ctx, c, "E", target.Identity, 0, true, nil)
				case "delete":
					err = f.svc.DeleteIdentity(ctx, c, "E", target.Identity)
				case "describe":
					_, err = f.svc.Identity(c, "E", target.Identity)
				case "list":
					var list []state.Identity
					list, _, err = f.svc.ListIdentities(c, "E", "", "", 0)
					if err == nil && !slices.ContainsFunc(list, func(i state.Identity) bool { return i.ID == target.Identity }) {
						t.Errorf("list lacks the target: %v", list)
					}
				}
				switch want {
				case 'y':
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
				case 'n':
					if !errors.Is(err, ErrPermission) {
						t.Fatalf("error %v, want %v", err, ErrPermission)
					}
				case 'i':
					if !errors.Is(err, state.ErrInvalidArgument) {
						t.Fatalf("error %v, want %v", err, state.ErrInvalidArgument)
					}
				}
				if want != 'y' && target.Identity != "" {
					// A refused write leaves the target as it was.
					i, err := f.st.Identity(target.Identity)
					if err != nil || i.Privilege != priv && !strings.HasPrefix(tt.target, "service account") {
						t.Errorf("target after refusal: %+v, %v", i, err)
					}
				}
			})
		}
	}
}

// TestServiceAccountRules: a parent may re-create its service account
// unchanged and delete it; a service account cannot make its parent (or
// itself) its service account; the parent still acts as before.
func TestServiceAccountRules(t *testing.T) {
	ctx := context.Background()
	f := newIdentityFixture(t)
	admin := f.add(state.Admin, "")
	sa := f.serviceAccount(admin)
	saOfSA := f.serviceAccount(sa)

	if err := f.svc.CreateIdentity(ctx, admin, "E", sa.Identity, 0, true, nil); err != nil {
		t.Errorf("parent re-creates its service account: %v", err)
	}
	for name, tc := range map[string]struct{ by, id Caller }{
		"service account makes its parent its service account": {sa, admin},
		"grandchild makes its grandparent its service account": {saOfSA, admin},
		"service account makes itself its service account":     {sa, sa},
	} {
		err := f.svc.CreateIdentity(ctx, tc.by, "E", tc.id.Identity, 0, true, nil)
		if !errors.Is(err, ErrPermission) && !errors.Is(err, state.ErrInvalidArgument) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The state refuses the cycle whatever the service let through.
	data, _ := f.st.EncodeEntry(&state.Entry{Op: state.OpCreateIdentity, By: saOfSA.Identity, Enclave: "E", Name: admin.Identity, Identity: &state.IdentityArgs{ServiceAccount: true}})
	if err := f.st.Apply(data); !errors.Is(err, state.ErrInvalidArgument) {
		t.Errorf("state applied a cycle: %v", err)
	}
	for _, c := range []Caller{admin, sa, saOfSA} {
		if priv, _, _, err := f.svc.privilege(c); err != nil || priv != state.Admin {
			t.Errorf("%s acts as %v, %v", c.Identity, priv, err)
		}
	}
	if err := f.svc.DeleteIdentity(ctx, admin, "E", sa.Identity); err != nil {
		t.Fatalf("parent deletes its service account: %v", err)
	}
	for _, c := range []Caller{sa, saOfSA} {
		if _, err := f.st.Identity(c.Identity); !errors.Is(err, state.ErrIdentityNotFound) {
			t.Errorf("%s survived its parent's deletion: %v", c.Identity, err)
		}
	}
	if i, _ := f.st.Identity(admin.Identity); len(i.ServiceAccounts) != 0 {
		t.Errorf("parent still lists %v", i.ServiceAccounts)
	}
}

// TestImportPrivilege: KEY:CREATE rules do not grant import; KEY:IMPORT
// rules do; Admins and SysAdmins always may.
func TestImportPrivilege(t *testing.T) {
	ctx := context.Background()
	f := newIdentityFixture(t)
	material := bytes.Repeat([]byte{1}, 32)
	tests := []struct {
		name   string
		caller Caller
		want   error
	}{
		{"root", f.root, nil},
		{"SysAdmin", f.add(state.SysAdmin, ""), nil},
		{"Admin", f.add(state.Admin, ""), nil},
		{"User with KEY:CREATE", f.add(state.User, "ids"), ErrPermission},
		{"User with KEY:IMPORT", f.add(state.User, "imp"), nil},
		{"User without policy", f.add(state.User, ""), ErrPermission},
	}
	for k, tt := range tests {
		err := f.svc.ImportKey(ctx, tt.caller, "E", fmt.Sprintf("imported-%d", k), "AES256", material)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s imports: %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := f.svc.CreateKey(ctx, tests[4].caller, "E", "created", "AES256", false); !errors.Is(err, ErrPermission) {
		t.Errorf("User with KEY:IMPORT creates: %v", err)
	}
}
