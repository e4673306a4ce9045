package e2e

import (
	"testing"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// TestErrors triggers every recognised error of spec §4.2 and checks it with
// errors.Is, which compares status code and message exactly.
func TestErrors(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	c := n.RootClient(t)
	ctx := ctxT(t)

	noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "e"}), "CreateEnclave e")
	noErr(t, c.CreateKey(ctx, "e", &kms.CreateKeyRequest{Name: "k"}), "CreateKey k")
	g, err := c.GenerateKey(ctx, "e", &kms.GenerateKeyRequest{Name: "k", AssociatedData: []byte("ad")})
	noErr(t, err, "GenerateKey k")
	user := testnode.NewAPIKey(t)
	noErr(t, c.CreateIdentity(ctx, "e", &kms.CreateIdentityRequest{Identity: user.Identity(), Privilege: kms.User}), "CreateIdentity user")

	for _, tc := range []struct {
		name string
		want kms.Error
		call func() error
	}{
		{"permission: user without policy", kms.ErrPermission, func() error {
			_, err := n.Client(t, user).GenerateKey(ctx, "e", &kms.GenerateKeyRequest{Name: "k"})
			return err
		}},
		{"permission: unknown identity", kms.ErrPermission, func() error {
			_, err := n.Client(t, testnode.NewAPIKey(t)).ListEnclaves(ctx, &kms.ListRequest{})
			return err
		}},
		{"enclave exists", kms.ErrEnclaveExists, func() error {
			return c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "e"})
		}},
		{"enclave exists: default", kms.ErrEnclaveExists, func() error {
			return c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "default"})
		}},
		{"enclave not found: delete", kms.ErrEnclaveNotFound, func() error {
			return c.DeleteEnclave(ctx, &kms.DeleteEnclaveRequest{Name: "nope"})
		}},
		{"enclave not found: status", kms.ErrEnclaveNotFound, func() error {
			_, err := c.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: "nope"})
			return err
		}},
		{"enclave not found: create key", kms.ErrEnclaveNotFound, func() error {
			return c.CreateKey(ctx, "nope", &kms.CreateKeyRequest{Name: "k"})
		}},
		{"enclave not found: generate", kms.ErrEnclaveNotFound, func() error {
			_, err := c.GenerateKey(ctx, "nope", &kms.GenerateKeyRequest{Name: "k"})
			return err
		}},
		{"enclave not found: create policy", kms.ErrEnclaveNotFound, func() error {
			return c.CreatePolicy(ctx, "nope", &kms.CreatePolicyRequest{Name: "p"})
		}},
		{"enclave not found: create identity", kms.ErrEnclaveNotFound, func() error {
			return c.CreateIdentity(ctx, "nope", &kms.CreateIdentityRequest{Identity: testnode.NewAPIKey(t).Identity(), Privilege: kms.User})
		}},
		{"key exists: create", kms.ErrKeyExists, func() error {
			return c.CreateKey(ctx, "e", &kms.CreateKeyRequest{Name: "k"})
		}},
		{"key exists: import", kms.ErrKeyExists, func() error {
			return c.ImportKey(ctx, "e", &kms.ImportKeyRequest{Name: "k", Type: kms.AES256, Key: randBytes(t, 32)})
		}},
		{"key not found: status", kms.ErrKeyNotFound, func() error {
			_, err := c.KeyStatus(ctx, "e", &kms.KeyStatusRequest{Name: "nope"})
			return err
		}},
		{"key not found: status of missing version", kms.ErrKeyNotFound, func() error {
			_, err := c.KeyStatus(ctx, "e", &kms.KeyStatusRequest{Name: "k", Version: 2})
			return err
		}},
		{"key not found: generate", kms.ErrKeyNotFound, func() error {
			_, err := c.GenerateKey(ctx, "e", &kms.GenerateKeyRequest{Name: "nope"})
			return err
		}},
		{"key not found: generate with missing version", kms.ErrKeyNotFound, func() error {
			_, err := c.GenerateKey(ctx, "e", &kms.GenerateKeyRequest{Name: "k", Version: 7})
			return err
		}},
		{"key not found: decrypt", kms.ErrKeyNotFound, func() error {
			_, err := c.Decrypt(ctx, "e", &kms.DecryptRequest{Name: "nope", Ciphertext: g[0].Ciphertext, AssociatedData: []byte("ad")})
			return err
		}},
		{"key not found: encrypt", kms.ErrKeyNotFound, func() error {
			_, err := encrypt(ctx, c, "e", &kms.EncryptRequest{Name: "nope", Plaintext: []byte("x")})
			return err
		}},
		{"key not found: delete", kms.ErrKeyNotFound, func() error {
			return c.DeleteKey(ctx, "e", &kms.DeleteKeyRequest{Name: "nope", AllVersions: true})
		}},
		{"key not found: delete missing version", kms.ErrKeyNotFound, func() error {
			return c.DeleteKey(ctx, "e", &kms.DeleteKeyRequest{Name: "k", Version: 5})
		}},
		{"key not found: key of another enclave", kms.ErrKeyNotFound, func() error {
			_, err := c.KeyStatus(ctx, "default", &kms.KeyStatusRequest{Name: "k"})
			return err
		}},
		{"policy not found: get", kms.ErrPolicyNotFound, func() error {
			_, err := c.GetPolicy(ctx, "e", &kms.PolicyRequest{Name: "nope"})
			return err
		}},
		{"policy not found: status", kms.ErrPolicyNotFound, func() error {
			_, err := c.PolicyStatus(ctx, "e", &kms.PolicyRequest{Name: "nope"})
			return err
		}},
		{"policy not found: delete", kms.ErrPolicyNotFound, func() error {
			return c.DeletePolicy(ctx, "e", &kms.DeletePolicyRequest{Name: "nope"})
		}},
		{"policy not found: assign", kms.ErrPolicyNotFound, func() error {
			return c.AssignPolicy(ctx, "e", &kms.AssignPolicyRequest{Identity: user.Identity(), Policy: "nope"})
		}},
		{"identity not found: status", kms.ErrIdentityNotFound, func() error {
			_, err := c.GetIdentity(ctx, "e", &kms.IdentityRequest{Identity: testnode.NewAPIKey(t).Identity()})
			return err
		}},
		{"identity not found: delete", kms.ErrIdentityNotFound, func() error {
			return c.DeleteIdentity(ctx, "e", &kms.DeleteIdentityRequest{Identity: testnode.NewAPIKey(t).Identity()})
		}},
		{"invalid ciphertext: wrong associated data", kms.ErrDecrypt, func() error {
			_, err := c.Decrypt(ctx, "e", &kms.DecryptRequest{Name: "k", Ciphertext: g[0].Ciphertext, AssociatedData: []byte("ae")})
			return err
		}},
		{"invalid ciphertext: garbage", kms.ErrDecrypt, func() error {
			_, err := c.Decrypt(ctx, "e", &kms.DecryptRequest{Name: "k", Ciphertext: []byte{1, 2, 3}})
			return err
		}},
		{"invalid ciphertext: empty", kms.ErrDecrypt, func() error {
			_, err := c.Decrypt(ctx, "e", &kms.DecryptRequest{Name: "k"})
			return err
		}},
	} {
		errIs(t, tc.call(), tc.want, tc.name)
	}

	// The policy of AssignPolicy to a missing identity must exist first.
	noErr(t, c.CreatePolicy(ctx, "e", &kms.CreatePolicyRequest{Name: "p"}), "CreatePolicy p")
	errIs(t, c.AssignPolicy(ctx, "e", &kms.AssignPolicyRequest{Identity: testnode.NewAPIKey(t).Identity(), Policy: "p"}), kms.ErrIdentityNotFound, "identity not found: assign")
}
