package attack

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kes"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/test/testnode"
)

// identMatrix is the table of docs/identities.md: for each caller and
// target privilege, the status of create, re-create unchanged, overwrite
// (another privilege), make it a service account, delete, describe and
// list on the MinIO KMS API.
var identMatrix = []struct {
	caller, target string
	want           [7]int
}{
	{"root", "SysAdmin", [7]int{200, 200, 200, 400, 200, 200, 200}},
	{"root", "Admin", [7]int{200, 200, 200, 400, 200, 200, 200}},
	{"root", "User", [7]int{200, 200, 200, 400, 200, 200, 200}},
	{"SysAdmin", "SysAdmin", [7]int{200, 200, 403, 403, 200, 200, 200}},
	{"SysAdmin", "Admin", [7]int{200, 200, 200, 200, 200, 200, 200}},
	{"SysAdmin", "User", [7]int{200, 200, 200, 200, 200, 200, 200}},
	{"Admin", "SysAdmin", [7]int{403, 403, 403, 403, 403, 200, 200}},
	{"Admin", "Admin", [7]int{200, 200, 403, 403, 200, 200, 200}},
	{"Admin", "User", [7]int{200, 200, 200, 200, 200, 200, 200}},
	{"User", "SysAdmin", [7]int{403, 403, 403, 403, 403, 200, 200}},
	{"User", "Admin", [7]int{403, 403, 403, 403, 403, 200, 200}},
	{"User", "User", [7]int{200, 200, 403, 403, 200, 200, 200}},
}

var identOps = [7]string{"create", "re-create unchanged", "overwrite", "make it a service account", "delete", "describe", "list"}

// TestIdentMatrix drives every cell of the identity table against the real
// binary: the MinIO KMS API for every operation, the KES API for describe,
// list and self. All identities live in the default enclave, which the KES
// API serves; a User caller's policy allows every IDENTITY command. A
// refused write must leave the target exactly as it was.
func TestIdentMatrix(t *testing.T) {
	n := testnode.Start(t, testnode.Options{Dev: true})
	root := n.RootClient(t)
	ctx := identCtx(t, 5*time.Minute)
	const enc = "default"
	identNoErr(t, root.CreatePolicy(ctx, enc, &kms.CreatePolicyRequest{Name: "ids", Allow: map[cmds.Command]kms.RuleSet{
		cmds.IdentityCreate: {"*": {}}, cmds.IdentityDelete: {"*": {}}, cmds.IdentityGet: {"*": {}}, cmds.IdentityList: {"*": {}},
	}}), "policy ids")

	register := func(priv kms.Privilege, policy string) mtls.PrivateKey {
		t.Helper()
		k := testnode.NewAPIKey(t)
		identNoErr(t, root.CreateIdentity(ctx, enc, &kms.CreateIdentityRequest{Identity: k.Identity(), Privilege: priv}), "root registers %v", priv)
		if policy != "" {
			identNoErr(t, root.AssignPolicy(ctx, enc, &kms.AssignPolicyRequest{Policy: policy, Identity: k.Identity()}), "assign %s", policy)
		}
		return k
	}
	callers := map[string]mtls.PrivateKey{
		"root":     n.Root,
		"SysAdmin": register(kms.SysAdmin, ""),
		"Admin":    register(kms.Admin, ""),
		"User":     register(kms.User, "ids"),
	}

	for _, row := range identMatrix {
		caller := n.Client(t, callers[row.caller])
		kc := n.KESClient(t, callers[row.caller])
		priv := identPrivilege[row.target]
		other := kms.User // what overwrite changes the privilege to
		if priv == kms.User {
			other = kms.Admin
		}
		for k, op := range identOps {
			name := fmt.Sprintf("%s/%s/%s", row.caller, row.target, op)
			var target mtls.Identity
			if op != "create" {
				target = register(priv, "").Identity()
			}
			var err error
			switch op {
			case "create":
				err = caller.CreateIdentity(ctx, enc, &kms.CreateIdentityRequest{Identity: testnode.NewAPIKey(t).Identity(), Privilege: priv})
			case "re-create unchanged":
				err = caller.CreateIdentity(ctx, enc, &kms.CreateIdentityRequest{Identity: target, Privilege: priv})
			case "overwrite":
				err = caller.CreateIdentity(ctx, enc, &kms.CreateIdentityRequest{Identity: target, Privilege: other})
			case "make it a service account":
				err = caller.CreateIdentity(ctx, enc, &kms.CreateIdentityRequest{Identity: target, IsServiceAccount: true})
			case "delete":
				err = caller.DeleteIdentity(ctx, enc, &kms.DeleteIdentityRequest{Identity: target})
			case "describe":
				var got []*kms.IdentityResponse
				got, err = caller.GetIdentity(ctx, enc, &kms.IdentityRequest{Identity: target})
				if err == nil && (len(got) != 1 || got[0].Identity != target) {
					t.Errorf("%s: got %+v", name, got)
				}
			case "list":
				var page *kms.Page[kms.IdentityResponse]
				page, err = caller.ListIdentities(ctx, &kms.ListRequest{Enclave: enc})
				if err == nil && !slices.ContainsFunc(page.Items, func(i kms.IdentityResponse) bool { return i.Identity == target }) {
					t.Errorf("%s: list lacks the target", name)
				}
			}
			if got := identStatus(err); got != row.want[k] {
				t.Errorf("%s: MinIO KMS API: %s, want %d", name, testnode.DescribeErr(err), row.want[k])
			}
			if row.want[k] != 200 && !target.IsZero() {
				got, err := root.GetIdentity(ctx, enc, &kms.IdentityRequest{Identity: target})
				if err != nil {
					t.Errorf("%s: refused, yet the target is gone: %s", name, testnode.DescribeErr(err))
				} else if got[0].Privilege != priv || got[0].IsServiceAccount {
					t.Errorf("%s: refused, yet the target changed: %v, service account %v", name, got[0].Privilege, got[0].IsServiceAccount)
				}
			}

			// The KES API: describe the target (a fresh one after a
			// delete), list and self.
			if op == "describe" {
				info, err := kc.DescribeIdentity(ctx, identHex(target))
				if got := identStatus(err); got != row.want[k] {
					t.Errorf("%s: KES API: %d %v, want %d", name, got, err, row.want[k])
				} else if err == nil && info.IsAdmin != (priv != kms.User) {
					t.Errorf("%s: KES API: %+v", name, info)
				}
			}
			if op == "list" {
				ids, _, err := kc.ListIdentities(ctx, "", 0)
				if got := identStatus(err); got != row.want[k] || err == nil && !slices.Contains(ids, identHex(target)) {
					t.Errorf("%s: KES API: %d %v (%d identities), want %d and the target", name, got, err, len(ids), row.want[k])
				}
			}
		}
		if row.caller != "root" {
			if _, _, err := kc.DescribeSelf(ctx); err != nil {
				t.Errorf("%s: KES self/describe: %v", row.caller, err)
			}
		}
	}
}

// TestIdentServiceAccountCycle: a service account that makes its parent
// (or its grandparent) its service account is refused, and parent and
// children still answer within a second. On the old binary the attempt
// succeeded and every request of either identity spun forever.
func TestIdentServiceAccountCycle(t *testing.T) {
	n := testnode.Start(t, testnode.Options{Dev: true})
	root := n.RootClient(t)
	ctx := identCtx(t, time.Minute)
	for _, priv := range []kms.Privilege{kms.SysAdmin, kms.Admin, kms.User} {
		parent, child, grandchild := testnode.NewAPIKey(t), testnode.NewAPIKey(t), testnode.NewAPIKey(t)
		identNoErr(t, root.CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: parent.Identity(), Privilege: priv}), "parent")
		if priv == kms.User {
			identNoErr(t, root.CreatePolicy(ctx, "", &kms.CreatePolicyRequest{Name: "ids", Allow: map[cmds.Command]kms.RuleSet{cmds.IdentityCreate: {"*": {}}, cmds.IdentityList: {"*": {}}}}), "policy")
			identNoErr(t, root.AssignPolicy(ctx, "", &kms.AssignPolicyRequest{Policy: "ids", Identity: parent.Identity()}), "assign")
		}
		identNoErr(t, n.Client(t, parent).CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: child.Identity(), IsServiceAccount: true}), "%v parent creates a service account", priv)
		identNoErr(t, n.Client(t, child).CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: grandchild.Identity(), IsServiceAccount: true}), "service account creates its own")

		for _, attempt := range []struct {
			name     string
			by, whom mtls.PrivateKey
		}{
			{"child makes its parent its service account", child, parent},
			{"grandchild makes its grandparent its service account", grandchild, parent},
			{"grandchild makes its parent its service account", grandchild, child},
		} {
			err := n.Client(t, attempt.by).CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: attempt.whom.Identity(), IsServiceAccount: true})
			if s := identStatus(err); s != 403 && s != 400 {
				t.Errorf("%v: %s: %s, want 403", priv, attempt.name, testnode.DescribeErr(err))
			}
		}
		for who, k := range map[string]mtls.PrivateKey{"parent": parent, "child": child, "grandchild": grandchild} {
			// Listing is authorized by the privilege of the top of the
			// chain: the walk that spun on the old binary.
			start := time.Now()
			if _, err := n.Client(t, k).ListIdentities(identCtx(t, time.Second), &kms.ListRequest{}); err != nil {
				t.Fatalf("%v: %s does not answer within a second: %s", priv, who, testnode.DescribeErr(err))
			}
			got, err := n.Client(t, k).GetIdentity(identCtx(t, time.Second), "", &kms.IdentityRequest{})
			if err != nil {
				t.Fatalf("%v: %s does not describe itself within a second: %s", priv, who, testnode.DescribeErr(err))
			}
			if (who == "parent") == got[0].IsServiceAccount {
				t.Errorf("%v: %s after the attempts: %+v", priv, who, got[0])
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("%v: %s answered after %v", priv, who, d)
			}
		}
		if priv == kms.User {
			identNoErr(t, root.DeletePolicy(ctx, "", &kms.DeletePolicyRequest{Name: "ids"}), "delete policy")
		}
	}
}

// TestIdentImport: a User whose policy allows KEY:CREATE may not import a
// key on either API; one whose policy allows KEY:IMPORT may, on both. The
// import grant is written with the pinned kms-go (cmds.KeyImport) and with
// the keep CLI ("KEY:IMPORT"), and both clients can still read the policy.
func TestIdentImport(t *testing.T) {
	n := testnode.Start(t, testnode.Options{Dev: true})
	root := n.RootClient(t)
	ctx := identCtx(t, time.Minute)
	material := bytes.Repeat([]byte{0x5a}, 32)

	identNoErr(t, root.CreatePolicy(ctx, "", &kms.CreatePolicyRequest{Name: "create-only", Allow: map[cmds.Command]kms.RuleSet{cmds.KeyCreate: {"*": {}}}}), "policy create-only")
	creator := testnode.NewAPIKey(t)
	identNoErr(t, root.CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: creator.Identity(), Privilege: kms.User}), "creator")
	identNoErr(t, root.AssignPolicy(ctx, "", &kms.AssignPolicyRequest{Policy: "create-only", Identity: creator.Identity()}), "assign create-only")

	c, kc := n.Client(t, creator), n.KESClient(t, creator)
	identNoErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "created"}), "User with KEY:CREATE creates a key")
	err := c.ImportKey(ctx, "", &kms.ImportKeyRequest{Name: "imp-kms", Type: kms.AES256, Key: material})
	if identStatus(err) != 403 {
		t.Errorf("User with KEY:CREATE imports on the MinIO KMS API: %s, want 403", testnode.DescribeErr(err))
	}
	err = kc.ImportKey(ctx, "imp-kes", &kes.ImportKeyRequest{Key: material, Cipher: kes.AES256})
	if identStatus(err) != 403 {
		t.Errorf("User with KEY:CREATE imports on the KES API: %v, want 403", err)
	}
	for _, name := range []string{"imp-kms", "imp-kes"} {
		if _, err := root.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: name}); identStatus(err) != 404 {
			t.Errorf("refused import created %s: %s", name, testnode.DescribeErr(err))
		}
	}

	// The grant, through the pinned client: it sends cmds.KeyImport as
	// "!INVALID:203".
	identNoErr(t, root.CreatePolicy(ctx, "", &kms.CreatePolicyRequest{Name: "import", Allow: map[cmds.Command]kms.RuleSet{cmds.KeyImport: {"imp-*": {}}}}), "policy import (kms-go)")
	importer := testnode.NewAPIKey(t)
	identNoErr(t, root.CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: importer.Identity(), Privilege: kms.User}), "importer")
	identNoErr(t, root.AssignPolicy(ctx, "", &kms.AssignPolicyRequest{Policy: "import", Identity: importer.Identity()}), "assign import")
	ic, ikc := n.Client(t, importer), n.KESClient(t, importer)
	identNoErr(t, ic.ImportKey(ctx, "", &kms.ImportKeyRequest{Name: "imp-kms", Type: kms.AES256, Key: material}), "User with KEY:IMPORT imports on the MinIO KMS API")
	if err := ikc.ImportKey(ctx, "imp-kes", &kes.ImportKeyRequest{Key: material, Cipher: kes.AES256}); err != nil {
		t.Errorf("User with KEY:IMPORT imports on the KES API: %v", err)
	}
	if err := ikc.ImportKey(ctx, "other", &kes.ImportKeyRequest{Key: material, Cipher: kes.AES256}); identStatus(err) != 403 {
		t.Errorf("User with KEY:IMPORT imp-* imports other: %v, want 403", err)
	}
	if err := ic.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "imp-created"}); identStatus(err) != 403 {
		t.Errorf("KEY:IMPORT grants KEY:CREATE: %s", testnode.DescribeErr(err))
	}

	// Both clients still read the policy; the KES API shows the route.
	got, err := root.GetPolicy(ctx, "", &kms.PolicyRequest{Name: "import"})
	if err != nil || len(got) != 1 {
		t.Errorf("kms-go GetPolicy of a policy with KEY:IMPORT: %s", testnode.DescribeErr(err))
	}
	kp, err := n.KESClient(t, n.Root).GetPolicy(ctx, "import")
	if err != nil {
		t.Errorf("KES GetPolicy: %v", err)
	} else if _, ok := kp.Allow["/v1/key/import/imp-*"]; !ok || len(kp.Allow) != 1 {
		t.Errorf("KES GetPolicy: %+v, want /v1/key/import/imp-*", kp.Allow)
	}

	// The keep CLI writes KEY:IMPORT in a policy file and shows it back.
	file := filepath.Join(t.TempDir(), "import.json")
	identNoErr(t, os.WriteFile(file, []byte(`{"allow": {"KEY:IMPORT": "cli-*", "KEY:STATUS": "*"}}`), 0o600), "policy file")
	if r := testnode.CLI(t, []string{n.Endpoint()}, n.APIKey, "add-policy", "cli-import", file, "-k"); r.Code != 0 {
		t.Fatalf("add-policy with KEY:IMPORT: %s", r)
	}
	r := testnode.CLI(t, []string{n.Endpoint()}, n.APIKey, "get-policy", "cli-import", "--json", "-k")
	var shown struct{ Allow map[string]any }
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &shown) != nil || shown.Allow["KEY:IMPORT"] == nil || shown.Allow["KEY:STATUS"] == nil {
		t.Errorf("get-policy does not show KEY:IMPORT: %s", r)
	}
	identNoErr(t, root.AssignPolicy(ctx, "", &kms.AssignPolicyRequest{Policy: "cli-import", Identity: creator.Identity()}), "assign cli-import")
	identNoErr(t, c.ImportKey(ctx, "", &kms.ImportKeyRequest{Name: "cli-1", Type: kms.AES256, Key: material}), "import under the CLI's policy")
}

// TestIdentRestore: a backup whose identities break the rules is refused
// before anything of it is applied, and a backup in the shape the old main
// wrote after a service-account cycle restores with the cycle broken, both
// identities answering within a second.
func TestIdentRestore(t *testing.T) {
	src := testnode.Start(t, testnode.Options{})
	root := src.RootClient(t)
	ctx := identCtx(t, 2*time.Minute)
	a, b := testnode.NewAPIKey(t), testnode.NewAPIKey(t)
	identNoErr(t, root.CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: a.Identity(), Privilege: kms.Admin}), "a")
	identNoErr(t, src.Client(t, a).CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: b.Identity(), IsServiceAccount: true}), "b, service account of a")
	identNoErr(t, root.CreatePolicy(ctx, "", &kms.CreatePolicyRequest{Name: "p", Allow: map[cmds.Command]kms.RuleSet{cmds.KeyStatus: {"*": {}}}}), "policy")

	r, err := root.ReadDB(ctx, &kms.ReadDBRequest{Host: src.Addr})
	identNoErr(t, err, "ReadDB")
	backup, err := io.ReadAll(r)
	r.Close()
	identNoErr(t, err, "read backup")
	plain := backup
	if bytes.HasPrefix(backup, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(backup))
		identNoErr(t, err, "gunzip backup")
		plain, err = io.ReadAll(zr)
		identNoErr(t, err, "gunzip backup")
	}

	// A backup is authenticated (tamper_test.go): records edited into it
	// are refused by its MAC before they are read. The records of a backup
	// of the previous version, which had none, are checked all the same
	// when an operator vouches for it (?unauthenticated-legacy): edit
	// returns the backup as that version wrote it (its JSON alone, format
	// 1), its identities changed by f.
	start := bytes.Index(plain, []byte(`{"format":`))
	if start < 0 {
		t.Fatal("the backup holds no JSON state")
	}
	edit := func(f func(ids []map[string]any) []map[string]any) []byte {
		var snap map[string]any
		identNoErr(t, json.Unmarshal(plain[start:], &snap), "decode backup")
		snap["format"] = 1
		var ids []map[string]any
		raw, _ := json.Marshal(snap["identities"])
		identNoErr(t, json.Unmarshal(raw, &ids), "decode identities")
		snap["identities"] = f(ids)
		out, _ := json.Marshal(snap)
		return out
	}
	find := func(ids []map[string]any, id mtls.Identity) map[string]any {
		for _, i := range ids {
			if i["ID"] == id.String() {
				return i
			}
		}
		t.Fatalf("backup lacks %s", id)
		return nil
	}
	restoreInto := func(data []byte) (*testnode.Node, error) {
		dst := testnode.Start(t, testnode.Options{HSMKey: src.HSMKey})
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, dst.Endpoint()+"/v1/db?unauthenticated-legacy", bytes.NewReader(data))
		identNoErr(t, err, "PUT /v1/db request")
		resp, err := testnode.HTTPClient(t, dst.Root, time.Minute).Do(req)
		identNoErr(t, err, "PUT /v1/db")
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return dst, &restoreError{status: resp.StatusCode, body: string(body)}
		}
		return dst, nil
	}

	invalid := map[string]func(ids []map[string]any) []map[string]any{
		"identity in an enclave that does not exist": func(ids []map[string]any) []map[string]any {
			return append(ids, map[string]any{"ID": testnode.NewAPIKey(t).Identity().String(), "Enclave": "nowhere", "Privilege": 1})
		},
		"privilege out of range": func(ids []map[string]any) []map[string]any {
			return append(ids, map[string]any{"ID": testnode.NewAPIKey(t).Identity().String(), "Enclave": "default", "Privilege": 0})
		},
		"service account whose parent does not list it": func(ids []map[string]any) []map[string]any {
			return append(ids, map[string]any{"ID": testnode.NewAPIKey(t).Identity().String(), "Enclave": "default", "Privilege": 1, "Parent": a.Identity().String()})
		},
		"policy that does not exist": func(ids []map[string]any) []map[string]any {
			find(ids, a.Identity())["Policy"] = "missing"
			return ids
		},
	}
	for name, f := range invalid {
		dst, err := restoreInto(edit(f))
		var re *restoreError
		if !errors.As(err, &re) || re.status != 400 || !strings.Contains(re.body, "invalid") {
			t.Errorf("%s: restore %v, want 400", name, err)
		}
		// Nothing was applied: the node is still fresh, a restores nowhere.
		if _, err := dst.RootClient(t).GetIdentity(ctx, "", &kms.IdentityRequest{Identity: a.Identity()}); identStatus(err) != 404 {
			t.Errorf("%s: refused restore left a: %s", name, testnode.DescribeErr(err))
		}
		dst.Kill()
	}

	// The old main let b make a its service account: a cycle, written last
	// on a. The restore breaks it there.
	cyclic := edit(func(ids []map[string]any) []map[string]any {
		ia, ib := find(ids, a.Identity()), find(ids, b.Identity())
		ia["Parent"], ib["ServiceAccounts"] = b.Identity().String(), []string{a.Identity().String()}
		ia["CreatedAt"] = time.Now().UTC().Format(time.RFC3339Nano)
		return ids
	})
	dst, err := restoreInto(cyclic)
	identNoErr(t, err, "restore a backup with a legacy cycle")
	for who, k := range map[string]mtls.PrivateKey{"a": a, "b": b} {
		if _, err := dst.Client(t, k).ListIdentities(identCtx(t, time.Second), &kms.ListRequest{}); err != nil {
			t.Fatalf("%s does not answer within a second after the restore: %s", who, testnode.DescribeErr(err))
		}
		got, err := dst.Client(t, k).GetIdentity(identCtx(t, time.Second), "", &kms.IdentityRequest{})
		if err != nil {
			t.Fatalf("%s does not describe itself after the restore: %s", who, testnode.DescribeErr(err))
		}
		if (who == "a") == got[0].IsServiceAccount || got[0].Privilege != kms.Admin {
			t.Errorf("%s after the restore: %+v", who, got[0])
		}
	}
}

// restoreError is a refused PUT /v1/db: its status and body.
type restoreError struct {
	status int
	body   string
}

func (e *restoreError) Error() string { return fmt.Sprintf("%d %s", e.status, e.body) }
