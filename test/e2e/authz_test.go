package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/test/testnode"
)

// authzEnv holds the fixtures of TestPrivileges: in each of the enclaves A,
// B and default the same keys, a policy "p" and an identity "target".
type authzEnv struct {
	t      *testing.T
	ctx    context.Context
	root   *kms.Client
	cts    map[string][]byte // enclave/key → ciphertext of a DEK, AAD "authz"
	target map[string]mtls.Identity
	seq    atomic.Int64
}

func (e *authzEnv) fresh(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, e.seq.Add(1))
}

// enc maps the enclave a caller uses to the one root set up: "" is default.
func enc(enclave string) string {
	if enclave == "" {
		return "default"
	}
	return enclave
}

type authzOp struct {
	name string
	run  func(e *authzEnv, c *kms.Client, enclave string) error
}

func opKeyStatus(key string) authzOp {
	return authzOp{"KEY:STATUS " + key, func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := c.KeyStatus(e.ctx, enclave, &kms.KeyStatusRequest{Name: key})
		return err
	}}
}

func opGenerate(key string) authzOp {
	return authzOp{"KEY:GENERATE " + key, func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := c.GenerateKey(e.ctx, enclave, &kms.GenerateKeyRequest{Name: key})
		return err
	}}
}

func opDecrypt(key string) authzOp {
	return authzOp{"KEY:DECRYPT " + key, func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := c.Decrypt(e.ctx, enclave, &kms.DecryptRequest{Name: key, Ciphertext: e.cts[enc(enclave)+"/"+key], AssociatedData: []byte("authz")})
		return err
	}}
}

func opEncrypt(key string) authzOp {
	return authzOp{"KEY:ENCRYPT " + key, func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := encrypt(e.ctx, c, enclave, &kms.EncryptRequest{Name: key, Plaintext: []byte("x")})
		return err
	}}
}

func opCreateKey(prefix string) authzOp {
	return authzOp{"KEY:CREATE " + prefix + "…", func(e *authzEnv, c *kms.Client, enclave string) error {
		return c.CreateKey(e.ctx, enclave, &kms.CreateKeyRequest{Name: e.fresh(prefix)})
	}}
}

func opRotateKey(key string) authzOp {
	return authzOp{"KEY:CREATE add_version " + key, func(e *authzEnv, c *kms.Client, enclave string) error {
		return c.CreateKey(e.ctx, enclave, &kms.CreateKeyRequest{Name: key, AddVersion: true})
	}}
}

func opImportKey(prefix string) authzOp {
	return authzOp{"KEY:IMPORT " + prefix + "…", func(e *authzEnv, c *kms.Client, enclave string) error {
		return c.ImportKey(e.ctx, enclave, &kms.ImportKeyRequest{Name: e.fresh(prefix), Type: kms.AES256, Key: randBytes(e.t, 32)})
	}}
}

func opDeleteKey(prefix string) authzOp {
	return authzOp{"KEY:DELETE " + prefix + "…", func(e *authzEnv, c *kms.Client, enclave string) error {
		name := e.fresh(prefix)
		noErr(e.t, e.root.CreateKey(e.ctx, enc(enclave), &kms.CreateKeyRequest{Name: name}), "root creates "+name)
		return c.DeleteKey(e.ctx, enclave, &kms.DeleteKeyRequest{Name: name, AllVersions: true})
	}}
}

var (
	opListKeys = authzOp{"KEY:LIST", func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := c.ListKeys(e.ctx, &kms.ListRequest{Enclave: enclave})
		return err
	}}
	opCreatePolicy = authzOp{"POLICY:CREATE", func(e *authzEnv, c *kms.Client, enclave string) error {
		return c.CreatePolicy(e.ctx, enclave, &kms.CreatePolicyRequest{Name: e.fresh("pol-"), Allow: map[cmds.Command]kms.RuleSet{cmds.KeyStatus: {"*": {}}}})
	}}
	opGetPolicy = authzOp{"POLICY:GET p", func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := c.GetPolicy(e.ctx, enclave, &kms.PolicyRequest{Name: "p"})
		return err
	}}
	opPolicyStatus = authzOp{"POLICY:STATUS p", func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := c.PolicyStatus(e.ctx, enclave, &kms.PolicyRequest{Name: "p"})
		return err
	}}
	opListPolicies = authzOp{"POLICY:LIST", func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := c.ListPolicies(e.ctx, &kms.ListRequest{Enclave: enclave})
		return err
	}}
	opDeletePolicy = authzOp{"POLICY:DELETE", func(e *authzEnv, c *kms.Client, enclave string) error {
		name := e.fresh("pol-del-")
		noErr(e.t, e.root.CreatePolicy(e.ctx, enc(enclave), &kms.CreatePolicyRequest{Name: name, Allow: map[cmds.Command]kms.RuleSet{cmds.KeyStatus: {"*": {}}}}), "root creates policy")
		return c.DeletePolicy(e.ctx, enclave, &kms.DeletePolicyRequest{Name: name})
	}}
	opAssignPolicy = authzOp{"POLICY:ASSIGN", func(e *authzEnv, c *kms.Client, enclave string) error {
		id := testnode.NewAPIKey(e.t).Identity()
		noErr(e.t, e.root.CreateIdentity(e.ctx, enc(enclave), &kms.CreateIdentityRequest{Identity: id, Privilege: kms.User}), "root creates identity")
		return c.AssignPolicy(e.ctx, enclave, &kms.AssignPolicyRequest{Identity: id, Policy: "p"})
	}}
	opCreateIdentity = authzOp{"IDENTITY:CREATE User", func(e *authzEnv, c *kms.Client, enclave string) error {
		return c.CreateIdentity(e.ctx, enclave, &kms.CreateIdentityRequest{Identity: testnode.NewAPIKey(e.t).Identity(), Privilege: kms.User})
	}}
	opGetIdentity = authzOp{"IDENTITY:STATUS other", func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := c.GetIdentity(e.ctx, enclave, &kms.IdentityRequest{Identity: e.target[enc(enclave)]})
		return err
	}}
	opGetSelf = authzOp{"IDENTITY:STATUS self", func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := c.GetIdentity(e.ctx, enclave, &kms.IdentityRequest{})
		return err
	}}
	opDeleteIdentity = authzOp{"IDENTITY:DELETE", func(e *authzEnv, c *kms.Client, enclave string) error {
		id := testnode.NewAPIKey(e.t).Identity()
		noErr(e.t, e.root.CreateIdentity(e.ctx, enc(enclave), &kms.CreateIdentityRequest{Identity: id, Privilege: kms.User}), "root creates identity")
		return c.DeleteIdentity(e.ctx, enclave, &kms.DeleteIdentityRequest{Identity: id})
	}}
	opListIdentities = authzOp{"IDENTITY:LIST", func(e *authzEnv, c *kms.Client, enclave string) error {
		_, err := c.ListIdentities(e.ctx, &kms.ListRequest{Enclave: enclave})
		return err
	}}

	// Cluster and enclave commands go to /v1/kms; the enclave is ignored.
	opCreateEnclave = authzOp{"ENCLAVE:CREATE", func(e *authzEnv, c *kms.Client, _ string) error {
		return c.CreateEnclave(e.ctx, &kms.CreateEnclaveRequest{Name: e.fresh("enc-")})
	}}
	opDeleteEnclave = authzOp{"ENCLAVE:DELETE", func(e *authzEnv, c *kms.Client, _ string) error {
		name := e.fresh("enc-del-")
		noErr(e.t, e.root.CreateEnclave(e.ctx, &kms.CreateEnclaveRequest{Name: name}), "root creates enclave")
		return c.DeleteEnclave(e.ctx, &kms.DeleteEnclaveRequest{Name: name})
	}}
	opEnclaveStatus = authzOp{"ENCLAVE:STATUS", func(e *authzEnv, c *kms.Client, _ string) error {
		_, err := c.EnclaveStatus(e.ctx, &kms.EnclaveStatusRequest{Name: "A"})
		return err
	}}
	opListEnclaves = authzOp{"ENCLAVE:LIST", func(e *authzEnv, c *kms.Client, _ string) error {
		_, err := c.ListEnclaves(e.ctx, &kms.ListRequest{})
		return err
	}}
	opClusterStatus = authzOp{"CLUSTER:STATUS", func(e *authzEnv, c *kms.Client, _ string) error {
		_, err := c.ClusterStatus(e.ctx, &kms.ClusterStatusRequest{})
		return err
	}}
)

// enclaveOps are the key, policy and identity commands an Admin may run in
// its own enclave.
var enclaveOps = []authzOp{
	opKeyStatus("allowed-1"), opGenerate("allowed-1"), opDecrypt("other"), opEncrypt("other"),
	opCreateKey("new-"), opRotateKey("other"), opImportKey("imp-"), opDeleteKey("del-"), opListKeys,
	opCreatePolicy, opGetPolicy, opPolicyStatus, opListPolicies, opDeletePolicy, opAssignPolicy,
	opCreateIdentity, opGetIdentity, opGetSelf, opDeleteIdentity, opListIdentities,
}

var clusterOps = []authzOp{opCreateEnclave, opDeleteEnclave, opEnclaveStatus, opListEnclaves}

// TestPrivileges checks the authorization matrix of spec §1.4 with a table of
// (caller, enclave, command, allowed?). Allowed means the call succeeds; not
// allowed means exactly 403 "access denied: insufficient permissions".
func TestPrivileges(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	ctx := ctxT(t)
	e := &authzEnv{t: t, ctx: ctx, root: n.RootClient(t), cts: map[string][]byte{}, target: map[string]mtls.Identity{}}
	root := e.root

	// Fixtures.
	noErr(t, root.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "A"}), "CreateEnclave A")
	noErr(t, root.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "B"}), "CreateEnclave B")
	policyP := &kms.CreatePolicyRequest{
		Name: "p",
		Allow: map[cmds.Command]kms.RuleSet{
			cmds.KeyStatus:   {"allowed*": {}, "exact": {}},
			cmds.KeyGenerate: {"allowed*": {}},
			cmds.KeyDecrypt:  {"*": {}},
			cmds.KeyCreate:   {"allowed*": {}},
			cmds.KeyList:     {"*": {}},
		},
		Deny: map[cmds.Command]kms.RuleSet{
			cmds.KeyStatus:   {"allowed-secret": {}},
			cmds.KeyGenerate: {"allowed-secret": {}},
		},
	}
	policyQ := &kms.CreatePolicyRequest{
		Name: "q",
		Allow: map[cmds.Command]kms.RuleSet{
			cmds.KeyStatus:   {"*": {}},
			cmds.KeyGenerate: {"*": {}},
		},
		Deny: map[cmds.Command]kms.RuleSet{
			cmds.KeyGenerate: {"allowed*": {}},
		},
	}
	for _, en := range []string{"A", "B", "default"} {
		for _, k := range []string{"allowed-1", "allowed-secret", "exact", "exactx", "other"} {
			noErr(t, root.CreateKey(ctx, en, &kms.CreateKeyRequest{Name: k}), "CreateKey "+en+"/"+k)
			g, err := root.GenerateKey(ctx, en, &kms.GenerateKeyRequest{Name: k, AssociatedData: []byte("authz")})
			noErr(t, err, "GenerateKey "+en+"/"+k)
			e.cts[en+"/"+k] = g[0].Ciphertext
		}
		noErr(t, root.CreatePolicy(ctx, en, policyP), "CreatePolicy p in "+en)
		noErr(t, root.CreatePolicy(ctx, en, policyQ), "CreatePolicy q in "+en)
		e.target[en] = testnode.NewAPIKey(t).Identity()
		noErr(t, root.CreateIdentity(ctx, en, &kms.CreateIdentityRequest{Identity: e.target[en], Privilege: kms.User}), "CreateIdentity target in "+en)
	}

	sysAdmin2, adminA, svcAdminA, userP, userQ, userNone, unknown := testnode.NewAPIKey(t), testnode.NewAPIKey(t), testnode.NewAPIKey(t), testnode.NewAPIKey(t), testnode.NewAPIKey(t), testnode.NewAPIKey(t), testnode.NewAPIKey(t)
	noErr(t, root.CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: sysAdmin2.Identity(), Privilege: kms.SysAdmin}), "CreateIdentity SysAdmin")
	noErr(t, root.CreateIdentity(ctx, "A", &kms.CreateIdentityRequest{Identity: adminA.Identity(), Privilege: kms.Admin}), "CreateIdentity Admin in A")
	noErr(t, root.CreateIdentity(ctx, "A", &kms.CreateIdentityRequest{Identity: userP.Identity(), Privilege: kms.User}), "CreateIdentity userP in A")
	noErr(t, root.CreateIdentity(ctx, "A", &kms.CreateIdentityRequest{Identity: userQ.Identity()}), "CreateIdentity userQ in A (empty privilege = User)")
	noErr(t, root.CreateIdentity(ctx, "A", &kms.CreateIdentityRequest{Identity: userNone.Identity(), Privilege: kms.User}), "CreateIdentity userNone in A")
	noErr(t, root.AssignPolicy(ctx, "A", &kms.AssignPolicyRequest{Identity: userP.Identity(), Policy: "p"}), "AssignPolicy p → userP")
	noErr(t, root.AssignPolicy(ctx, "A", &kms.AssignPolicyRequest{Identity: userQ.Identity(), Policy: "q"}), "AssignPolicy q → userQ")
	noErr(t, n.Client(t, adminA).CreateIdentity(ctx, "A", &kms.CreateIdentityRequest{Identity: svcAdminA.Identity(), IsServiceAccount: true}), "adminA creates a service account")

	type row struct {
		caller  string
		key     mtls.PrivateKey
		enclave string
		op      authzOp
		allowed bool
	}
	var rows []row
	add := func(caller string, key mtls.PrivateKey, enclave string, allowed bool, ops ...authzOp) {
		for _, op := range ops {
			rows = append(rows, row{caller, key, enclave, op, allowed})
		}
	}

	// SysAdmin: everything, everywhere.
	for _, c := range []struct {
		name string
		key  mtls.PrivateKey
	}{{"root", n.Root}, {"SysAdmin", sysAdmin2}} {
		for _, en := range []string{"A", "B", ""} {
			add(c.name, c.key, en, true, enclaveOps...)
		}
		add(c.name, c.key, "", true, clusterOps...)
	}
	// Admin of A and its service account: everything in A, nothing elsewhere,
	// no cluster or enclave commands.
	for _, c := range []struct {
		name string
		key  mtls.PrivateKey
	}{{"Admin(A)", adminA}, {"service account of Admin(A)", svcAdminA}} {
		add(c.name, c.key, "A", true, enclaveOps...)
		for _, op := range enclaveOps {
			if op.name != opGetSelf.name {
				add(c.name, c.key, "B", false, op)
				add(c.name, c.key, "", false, op)
			}
		}
		add(c.name, c.key, "", false, clusterOps...)
		add(c.name, c.key, "", false, opClusterStatus)
	}
	// User with policy p in A.
	add("User(A, p)", userP, "A", true,
		opKeyStatus("allowed-1"), opKeyStatus("exact"), opGenerate("allowed-1"),
		opDecrypt("other"), opDecrypt("allowed-secret"), opCreateKey("allowed-new-"), opListKeys, opGetSelf)
	// Importing is a privilege of its own: KEY:CREATE rules do not grant
	// it (docs/identities.md).
	add("User(A, p)", userP, "A", false, opImportKey("allowed-imp-"))
	add("User(A, p)", userP, "A", false,
		opKeyStatus("exactx"), opKeyStatus("other"), opKeyStatus("allowed-secret"), // exact ≠ prefix; deny beats allow
		opGenerate("other"), opGenerate("allowed-secret"), opGenerate("exact"),
		opCreateKey("nope-"), opRotateKey("other"), opDeleteKey("allowed-del-"), opImportKey("nope-imp-"), opEncrypt("allowed-1"),
		opCreatePolicy, opGetPolicy, opPolicyStatus, opListPolicies, opDeletePolicy, opAssignPolicy,
		opCreateIdentity, opGetIdentity, opDeleteIdentity, opListIdentities, opClusterStatus)
	add("User(A, p)", userP, "", false, clusterOps...)
	for _, en := range []string{"B", ""} {
		add("User(A, p)", userP, en, false, opKeyStatus("allowed-1"), opGenerate("allowed-1"), opDecrypt("other"), opListKeys)
	}
	// User with policy q: deny by prefix beats allow "*".
	add("User(A, q)", userQ, "A", true, opGenerate("other"), opGenerate("exact"), opKeyStatus("allowed-1"), opKeyStatus("other"))
	add("User(A, q)", userQ, "A", false, opGenerate("allowed-1"), opGenerate("allowed-secret"), opDecrypt("other"))
	// User without policy, unknown identity: nothing (but self status for a
	// known identity).
	for _, c := range []struct {
		name string
		key  mtls.PrivateKey
	}{{"User(A, no policy)", userNone}, {"unknown", unknown}} {
		for _, en := range []string{"A", "B", ""} {
			for _, op := range enclaveOps {
				if op.name == opGetSelf.name && c.key == userNone {
					if en == "A" { // its own enclave: any known identity may ask for itself
						add(c.name, c.key, en, true, op)
					}
					continue
				}
				add(c.name, c.key, en, false, op)
			}
		}
		add(c.name, c.key, "", false, clusterOps...)
		add(c.name, c.key, "", false, opClusterStatus)
	}

	for _, r := range rows {
		c := n.Client(t, r.key)
		err := r.op.run(e, c, r.enclave)
		where := r.enclave
		if where == "" {
			where = "/v1/kms"
		}
		switch {
		case r.allowed && err != nil:
			t.Errorf("%s in %s: %s: got %s, want allowed", r.caller, where, r.op.name, testnode.DescribeErr(err))
		case !r.allowed && !errors.Is(err, kms.ErrPermission):
			t.Errorf("%s in %s: %s: got %s, want 403 %q", r.caller, where, r.op.name, testnode.DescribeErr(err), kms.ErrPermission.Err)
		}
	}

	t.Run("SelfStatus", func(t *testing.T) {
		for _, c := range []struct {
			name string
			key  mtls.PrivateKey
			priv kms.Privilege
			en   string
		}{{"userNone", userNone, kms.User, "A"}, {"userP", userP, kms.User, "A"}, {"adminA", adminA, kms.Admin, "A"}, {"sysadmin", sysAdmin2, kms.SysAdmin, ""}} {
			r, err := n.Client(t, c.key).GetIdentity(ctx, c.en, &kms.IdentityRequest{})
			noErr(t, err, "GetIdentity self "+c.name)
			if r[0].Identity != c.key.Identity() || r[0].Privilege != c.priv {
				t.Errorf("GetIdentity self %s: identity %v privilege %v, want %v %v", c.name, r[0].Identity, r[0].Privilege, c.key.Identity(), c.priv)
			}
		}
	})

	t.Run("Escalation", func(t *testing.T) {
		ac := n.Client(t, adminA)
		err := ac.CreateIdentity(ctx, "A", &kms.CreateIdentityRequest{Identity: testnode.NewAPIKey(t).Identity(), Privilege: kms.SysAdmin})
		errIs(t, err, kms.ErrPermission, "Admin(A) creates a SysAdmin identity")
		// Admin may create an Admin of its own enclave.
		noErr(t, ac.CreateIdentity(ctx, "A", &kms.CreateIdentityRequest{Identity: testnode.NewAPIKey(t).Identity(), Privilege: kms.Admin}), "Admin(A) creates an Admin in A")
		// Admin cannot touch the root identity or promote itself.
		err = ac.CreateIdentity(ctx, "A", &kms.CreateIdentityRequest{Identity: adminA.Identity(), Privilege: kms.SysAdmin})
		errIs(t, err, kms.ErrPermission, "Admin(A) makes itself SysAdmin")
		// Policies can only be assigned to users.
		if err := root.AssignPolicy(ctx, "A", &kms.AssignPolicyRequest{Identity: adminA.Identity(), Policy: "p"}); err == nil {
			t.Errorf("AssignPolicy to an Admin identity succeeded, want an error (only User identities have policies)")
		}
	})

	t.Run("PolicyChangesApply", func(t *testing.T) {
		uc := n.Client(t, userNone)
		_, err := uc.KeyStatus(ctx, "A", &kms.KeyStatusRequest{Name: "allowed-1"})
		errIs(t, err, kms.ErrPermission, "userNone before assignment")
		noErr(t, root.AssignPolicy(ctx, "A", &kms.AssignPolicyRequest{Identity: userNone.Identity(), Policy: "p"}), "AssignPolicy p → userNone")
		_, err = uc.KeyStatus(ctx, "A", &kms.KeyStatusRequest{Name: "allowed-1"})
		noErr(t, err, "userNone after assigning p: KEY:STATUS allowed-1")

		// Overwriting p without KEY:STATUS takes it away at once.
		noErr(t, root.CreatePolicy(ctx, "A", &kms.CreatePolicyRequest{Name: "p", Allow: map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: {"*": {}}}}), "overwrite p")
		_, err = n.Client(t, userP).KeyStatus(ctx, "A", &kms.KeyStatusRequest{Name: "allowed-1"})
		errIs(t, err, kms.ErrPermission, "userP after p lost KEY:STATUS")
		_, err = n.Client(t, userP).GenerateKey(ctx, "A", &kms.GenerateKeyRequest{Name: "allowed-secret"})
		noErr(t, err, "userP after p became allow KEY:GENERATE *")

		// A deleted identity loses access.
		noErr(t, root.DeleteIdentity(ctx, "A", &kms.DeleteIdentityRequest{Identity: userP.Identity()}), "DeleteIdentity userP")
		_, err = n.Client(t, userP).GenerateKey(ctx, "A", &kms.GenerateKeyRequest{Name: "other"})
		errIs(t, err, kms.ErrPermission, "deleted userP generates")
		_, err = n.Client(t, userP).GetIdentity(ctx, "A", &kms.IdentityRequest{})
		errIs(t, err, kms.ErrPermission, "deleted userP asks for itself")
	})
}
