package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// TestPreviousMainKeyStates writes a data directory and takes a backup with
// the keep of the previous main, which knew no key states: this keep
// loads the directory, and restores the backup into a fresh node, with
// every version of every key active, no deletion scheduled and no
// rotation period, and every key decrypts what it encrypted.
func TestPreviousMainKeyStates(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the keep of an earlier commit")
	}
	ctx := context.Background()
	old := testnode.OldBinary(t, previousMain)
	hsm := testnode.NewHSMKey(t)
	n := testnode.New(t, testnode.Options{Name: "previous", Dir: t.TempDir(), HSMKey: hsm})
	n.StartWith(t, old)
	c := n.RootClient(t)
	noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "e"}), "CreateEnclave")
	noErr(t, c.CreateKey(ctx, "e", &kms.CreateKeyRequest{Name: "rotated"}), "CreateKey rotated")
	noErr(t, c.CreateKey(ctx, "e", &kms.CreateKeyRequest{Name: "rotated", AddVersion: true}), "rotate rotated")
	noErr(t, c.CreateKey(ctx, "e", &kms.CreateKeyRequest{Name: "rotated", AddVersion: true}), "rotate rotated")
	noErr(t, c.CreateKey(ctx, "e", &kms.CreateKeyRequest{Name: "chacha", Type: kms.ChaCha20}), "CreateKey chacha")
	noErr(t, c.ImportKey(ctx, "e", &kms.ImportKeyRequest{Name: "imported", Type: kms.AES256, Key: randBytes(t, 32)}), "ImportKey")
	noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "in-default"}), "CreateKey in-default")
	want := map[string]string{ // enclave/key: versions and states
		"e/rotated":          "1:active 2:active 3:active",
		"e/chacha":           "1:active",
		"e/imported":         "1:active",
		"default/in-default": "1:active",
	}
	deks := map[string][]*kms.GenerateKeyResponse{}
	for ek := range want {
		enclave, key, _ := strings.Cut(ek, "/")
		for v := range strings.Count(want[ek], ":") {
			g, err := c.GenerateKey(ctx, enclave, &kms.GenerateKeyRequest{Name: key, Version: v + 1})
			noErr(t, err, "GenerateKey "+ek)
			deks[ek] = append(deks[ek], g[0])
		}
	}
	r, err := c.ReadDB(ctx, &kms.ReadDBRequest{})
	noErr(t, err, "ReadDB from the previous keep")
	backup, err := io.ReadAll(r.Body)
	r.Close()
	noErr(t, err, "read the backup")
	n.Stop()

	check := func(when string, n *testnode.Node) {
		t.Helper()
		hc := testnode.HTTPClient(t, n.Root, 10*time.Second)
		c := n.RootClient(t)
		for ek, states := range want {
			enclave, key, _ := strings.Cut(ek, "/")
			k, err := testnode.GetKeyInfo(ctx, hc, n.Endpoint(), enclave, key)
			if err != nil {
				t.Errorf("%s: KeyInfo of %s: %s", when, ek, testnode.DescribeErr(err))
				continue
			}
			if k.States() != states || k.RotateEvery != "" || k.NextRotation != nil {
				t.Errorf("%s: %s: versions %q, rotate_every %q, next_rotation %v; want %q and no rotation", when, ek, k.States(), k.RotateEvery, k.NextRotation, states)
			}
			for _, v := range k.Versions {
				if v.DeleteAt != nil {
					t.Errorf("%s: %s: version %d has delete_at %v", when, ek, v.Version, v.DeleteAt)
				}
			}
			for _, g := range deks[ek] {
				d, err := c.Decrypt(ctx, enclave, &kms.DecryptRequest{Name: key, Ciphertext: g.Ciphertext})
				if err != nil || !bytes.Equal(d[0].Plaintext, g.Plaintext) {
					t.Errorf("%s: %s: decrypt with version %d: %s", when, ek, g.Version, testnode.DescribeErr(err))
				}
			}
		}
		// The CLI shows the same.
		env := []string{"MINIO_KMS_SERVER=" + n.Endpoint(), "MINIO_KMS_API_KEY=" + n.APIKey}
		if out := cliOK(t, env, "ls-key", "-e", "e", "-k"); strings.Count(out, " active\n") != 3 {
			t.Errorf("%s: keep ls-key -e e: want 3 keys active:\n%s", when, out)
		}
	}

	n.MustStart()
	check("upgraded", n)
	n.Restart()
	check("upgraded and restarted", n)

	fresh := testnode.Start(t, testnode.Options{Name: "fresh", HSMKey: hsm})
	noErr(t, fresh.RootClient(t).WriteDB(ctx, &kms.WriteDBRequest{Host: fresh.Addr, Body: bytes.NewReader(backup)}),
		fmt.Sprintf("restore the backup of the previous keep (%d bytes)", len(backup)))
	check("restored", fresh)
}
