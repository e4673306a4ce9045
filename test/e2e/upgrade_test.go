package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/kesfixture"
	"github.com/keep-kms/keep/test/testnode"
)

// previousMain is the commit of main before keys could be imported from
// KES: the data directories it wrote must keep working.
const previousMain = "565db9a"

// TestPreviousMainData writes a data directory with the keep of the
// previous main, then starts this keep on it: the old keys decrypt what
// they encrypted, a KES key can be imported beside them, and both still
// work after a restart.
func TestPreviousMainData(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the keep of an earlier commit")
	}
	ctx := context.Background()
	old := testnode.OldBinary(t, previousMain)
	n := testnode.New(t, testnode.Options{Name: "previous", Dir: t.TempDir(), HSMKey: testnode.NewHSMKey(t)})
	n.StartWith(t, old)
	c := n.RootClient(t)
	noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "e"}), "CreateEnclave")
	noErr(t, c.CreateKey(ctx, "e", &kms.CreateKeyRequest{Name: "k"}), "CreateKey")
	aad := []byte("context")
	g, err := c.GenerateKey(ctx, "e", &kms.GenerateKeyRequest{Name: "k", AssociatedData: aad, Length: 32})
	if err != nil || len(g) != 1 {
		t.Fatalf("GenerateKey with the previous keep: %v", err)
	}
	n.Stop()

	n.MustStart()
	c = n.RootClient(t)
	decrypts := func(when, key string, ciphertext, aad, want []byte) {
		t.Helper()
		r, err := c.Decrypt(ctx, "e", &kms.DecryptRequest{Name: key, Ciphertext: ciphertext, AssociatedData: aad})
		if err != nil || len(r) != 1 || !bytes.Equal(r[0].Plaintext, want) {
			t.Fatalf("%s: decrypt with %s: %s", when, key, testnode.DescribeErr(err))
		}
	}
	decrypts("upgraded", "k", g[0].Ciphertext, aad, g[0].Plaintext)

	dir, err := testnode.KESFixtures()
	if err != nil {
		t.Log("the KES part is skipped:", err)
		return
	}
	vec := kesfixture.LoadVectors(t, dir).Vectors[0]
	for _, f := range kesfixture.KeyFiles(t, dir) {
		if f.Name == vec.Key {
			kesfixture.Import(t, testnode.HTTPClient(t, n.Root, time.Minute), n.Endpoint(), "e", []kesfixture.KeyFile{f}, false)
		}
	}
	name := vec.Key
	decrypts("imported", name, vec.Ciphertext, vec.Context, vec.Plaintext)

	n.Restart()
	c = n.RootClient(t)
	decrypts("restarted", "k", g[0].Ciphertext, aad, g[0].Plaintext)
	decrypts("restarted", name, vec.Ciphertext, vec.Context, vec.Plaintext)
}
