package cluster_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/test/testnode"
)

// TestBackupRestore backs up a cluster with ReadDB and restores it with
// WriteDB into a fresh cluster with the same HSM key; restoring into a
// cluster that is not fresh or has another HSM key fails.
func TestBackupRestore(t *testing.T) {
	src := newCluster(t, 3, clusterOpts{})
	src.form()
	src.nodes[0].DeleteAtOnce(t) // the backup must not hold the deleted key
	ctx := ctxT(t, time.Minute)
	cl := src.client()

	// State of every kind.
	noErr(t, cl.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "tenant-a"}), "enclave a")
	noErr(t, cl.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "tenant-b"}), "enclave b")
	noErr(t, cl.CreateKey(ctx, "tenant-a", &kms.CreateKeyRequest{Name: "aes", Type: kms.AES256}), "key aes")
	noErr(t, cl.CreateKey(ctx, "tenant-a", &kms.CreateKeyRequest{Name: "chacha", Type: kms.ChaCha20}), "key chacha")
	noErr(t, cl.CreateKey(ctx, "tenant-a", &kms.CreateKeyRequest{Name: "deleted"}), "key deleted")
	noErr(t, cl.DeleteKey(ctx, "tenant-a", &kms.DeleteKeyRequest{Name: "deleted", AllVersions: true}), "delete key")
	material := make([]byte, 32)
	rand.Read(material)
	noErr(t, cl.ImportKey(ctx, "tenant-b", &kms.ImportKeyRequest{Name: "imported", Type: kms.AES256, Key: material}), "import key")
	noErr(t, cl.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "in-default"}), "key in default")

	type dek struct {
		enclave, key string
		resp         *kms.GenerateKeyResponse
	}
	var deks []dek
	gen := func(enclave, key string) {
		g, err := cl.GenerateKey(ctx, enclave, &kms.GenerateKeyRequest{Name: key, AssociatedData: []byte(enclave + "/" + key)})
		noErr(t, err, "generate %s/%s", enclave, key)
		deks = append(deks, dek{enclave, key, g[0]})
	}
	gen("tenant-a", "aes")
	gen("tenant-a", "chacha")
	gen("tenant-b", "imported")
	gen("", "in-default")
	noErr(t, cl.CreateKey(ctx, "tenant-a", &kms.CreateKeyRequest{Name: "aes", AddVersion: true}), "rotate aes")
	gen("tenant-a", "aes")

	noErr(t, cl.CreatePolicy(ctx, "tenant-a", &kms.CreatePolicyRequest{
		Name:  "gen-aes",
		Allow: map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: {"aes*": {}}, cmds.KeyDecrypt: {"aes*": {}}},
	}), "policy")
	user := testnode.NewAPIKey(t)
	noErr(t, cl.CreateIdentity(ctx, "tenant-a", &kms.CreateIdentityRequest{Identity: user.Identity(), Privilege: kms.User}), "user")
	noErr(t, cl.AssignPolicy(ctx, "tenant-a", &kms.AssignPolicyRequest{Policy: "gen-aes", Identity: user.Identity()}), "assign policy")
	admin := testnode.NewAPIKey(t)
	noErr(t, cl.CreateIdentity(ctx, "tenant-b", &kms.CreateIdentityRequest{Identity: admin.Identity(), Privilege: kms.Admin}), "admin")

	// Back up through a follower.
	l := src.lead()
	f := src.others(l)[0]
	r, err := src.client(f).ReadDB(ctx, &kms.ReadDBRequest{Host: src.nodes[f].Addr})
	noErr(t, err, "ReadDB")
	backup, err := io.ReadAll(r)
	r.Close()
	noErr(t, err, "read backup")
	file := filepath.Join(t.TempDir(), "keep.backup")
	noErr(t, os.WriteFile(file, backup, 0o600), "write backup file")
	t.Logf("backup: %d bytes", len(backup))
	if len(backup) == 0 {
		t.Fatal("empty backup")
	}
	if bytes.Contains(backup, material) {
		t.Errorf("backup holds the imported key material in plaintext")
	}

	// check verifies that the restored cluster serves everything.
	check := func(c *cluster, phase string) {
		t.Helper()
		for i := range c.nodes {
			root := c.client(i)
			page, err := root.ListEnclaves(ctx, &kms.ListRequest{})
			noErr(t, err, "%s: list enclaves on node %d", phase, i)
			var names []string
			for _, e := range page.Items {
				names = append(names, e.Name)
			}
			for _, want := range []string{"tenant-a", "tenant-b"} {
				if !slices.Contains(names, want) {
					t.Errorf("%s: node %d lists enclaves %v, missing %s", phase, i, names, want)
				}
			}
			st, err := root.KeyStatus(ctx, "tenant-a", &kms.KeyStatusRequest{Name: "aes"})
			noErr(t, err, "%s: key status aes on node %d", phase, i)
			if st[0].Version != 2 {
				t.Errorf("%s: node %d: aes at version %d, want 2", phase, i, st[0].Version)
			}
			if ok, err := keyExists(ctx, root, "tenant-a", "deleted"); ok || err != nil {
				t.Errorf("%s: node %d: deleted key exists: %v %v", phase, i, ok, err)
			}
			for _, d := range deks {
				pt, err := root.Decrypt(ctx, d.enclave, &kms.DecryptRequest{Name: d.key, Ciphertext: d.resp.Ciphertext, AssociatedData: []byte(d.enclave + "/" + d.key)})
				noErr(t, err, "%s: node %d: decrypt an old ciphertext of %s/%s", phase, i, d.enclave, d.key)
				if !bytes.Equal(pt[0].Plaintext, d.resp.Plaintext) {
					t.Errorf("%s: node %d: %s/%s decrypts to another plaintext", phase, i, d.enclave, d.key)
				}
			}
			p, err := root.GetPolicy(ctx, "tenant-a", &kms.PolicyRequest{Name: "gen-aes"})
			noErr(t, err, "%s: node %d: get policy", phase, i)
			if len(p[0].Allow) != 2 {
				t.Errorf("%s: node %d: policy allows %v", phase, i, p[0].Allow)
			}
			// The identities work, with their privilege and policy.
			u := c.clientKey(user, i)
			_, err = u.GenerateKey(ctx, "tenant-a", &kms.GenerateKeyRequest{Name: "aes"})
			noErr(t, err, "%s: node %d: the restored user generates with aes", phase, i)
			_, err = u.GenerateKey(ctx, "tenant-a", &kms.GenerateKeyRequest{Name: "chacha"})
			wantStatus(t, err, 403, "%s: node %d: the restored user generates with chacha", phase, i)
			a := c.clientKey(admin, i)
			_, err = a.KeyStatus(ctx, "tenant-b", &kms.KeyStatusRequest{Name: "imported"})
			noErr(t, err, "%s: node %d: the restored admin reads its enclave", phase, i)
			id, err := root.GetIdentity(ctx, "tenant-a", &kms.IdentityRequest{Identity: user.Identity()})
			noErr(t, err, "%s: node %d: get identity", phase, i)
			if id[0].Policy != "gen-aes" || id[0].Privilege != kms.User {
				t.Errorf("%s: node %d: user restored as %v with policy %q", phase, i, id[0].Privilege, id[0].Policy)
			}
		}
	}

	// A fresh cluster with the same HSM key takes the backup.
	dst := newCluster(t, 3, clusterOpts{hsm: src.hsm})
	dst.form()
	in, err := os.Open(file)
	noErr(t, err, "open backup")
	dl := dst.leader(0)
	target := dst.others(dl)[0] // a follower: the restore is forwarded
	err = dst.client(target).WriteDB(ctx, &kms.WriteDBRequest{Host: dst.nodes[target].Addr, Body: in})
	in.Close()
	noErr(t, err, "WriteDB into a fresh cluster")
	check(dst, "restored")
	names, _ := createKeys(t, dst.client(), "tenant-a", "after-restore", 2)
	for i := range dst.nodes {
		dst.wantKeys(t, i, "tenant-a", names)
	}

	restore := func(c *cluster, i int, what string) error {
		t.Helper()
		err := c.client(i).WriteDB(ctx, &kms.WriteDBRequest{Host: c.nodes[i].Addr, Body: bytes.NewReader(backup)})
		t.Logf("WriteDB into %s: %s", what, testnode.DescribeErr(err))
		if err == nil {
			t.Errorf("WriteDB into %s succeeded", what)
		} else if s := testnode.StatusOf(err); s != 400 && s != 409 {
			t.Errorf("WriteDB into %s: %s, want 400 or 409", what, testnode.DescribeErr(err))
		}
		return err
	}
	// Not fresh: the restored cluster, and the source itself.
	restore(dst, 0, "the restored cluster")
	restore(src, l, "the source cluster")
	check(dst, "after a refused second restore")

	// Another HSM key: the backup's root key does not unseal.
	other := testnode.Start(t, testnode.Options{Name: "other-hsm"})
	oc := &cluster{t: t, nodes: []*testnode.Node{other}, root: other.Root}
	restore(oc, 0, "a cluster with another HSM key")
	page, err := oc.client(0).ListEnclaves(ctx, &kms.ListRequest{})
	noErr(t, err, "list enclaves after the refused restore")
	if len(page.Items) != 1 {
		t.Errorf("the cluster with another HSM key holds %d enclaves after a refused restore", len(page.Items))
	}
	noErr(t, oc.client(0).CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "still-works"}), "write after a refused restore")
}
