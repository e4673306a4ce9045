package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// beforeHSMs is the last main before a cluster could have several HSMs: its
// data directories and backups hold the root key sealed by one soft HSM key,
// with no name.
const beforeHSMs = "db195a7"

// hsmKey is the soft HSM key of h, as MINIO_KMS_HSM_KEY holds it.
func hsmKey(h testnode.HSM) string {
	_, key, _ := strings.Cut(h.Env[0], "=")
	return key
}

// writeHSMConfig writes a config file listing hsms, and returns it and
// the environment they need.
func writeHSMConfig(t *testing.T, hsms ...testnode.HSM) (string, []string) {
	t.Helper()
	section, env := testnode.HSMConfig(hsms...)
	return writeConfigFile(t, "version: v1\n"+section), env
}

// TestPreviousMainMovesHSM upgrades a data directory of the last main
// before several HSMs (one unnamed soft seal) in place, moves it to another
// HSM, and restores a backup of that main on the moved node: nothing of
// what the old node wrote is lost.
func TestPreviousMainMovesHSM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the keep of an earlier commit")
	}
	ctx := context.Background()
	old := testnode.OldBinary(t, beforeHSMs)
	a, b := testnode.SoftHSM(t, "", "KEEP_TEST_KEY_A"), testnode.SoftHSM(t, "b", "KEEP_TEST_KEY_B")
	n := testnode.New(t, testnode.Options{Name: "upgraded", Dir: t.TempDir(), HSMKey: hsmKey(a)})
	n.StartWith(t, old)
	c := n.RootClient(t)
	rootA := n.Root
	noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "k"}), "CreateKey on the previous main")
	g, err := c.GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: "k"})
	noErr(t, err, "GenerateKey on the previous main")
	r, err := c.ReadDB(ctx, &kms.ReadDBRequest{})
	noErr(t, err, "ReadDB on the previous main")
	backup, err := io.ReadAll(r.Body)
	r.Close()
	noErr(t, err, "read the backup")
	n.Stop()

	decrypts := func(when string) {
		t.Helper()
		d, err := n.RootClient(t).Decrypt(ctx, "", &kms.DecryptRequest{Name: "k", Ciphertext: g[0].Ciphertext})
		if err != nil || !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
			t.Fatalf("%s: the previous main's data key does not decrypt: %s", when, testnode.DescribeErr(err))
		}
	}

	// The new keep, configured with A (as the old one was) and B.
	n.HSMKey, n.NoAPIKey = "-", true // the root API keys are set below
	n.Config, n.ExtraEnv = writeHSMConfig(t, a, b)
	n.MustStart()
	decrypts("upgraded, on A")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	noErr(t, testnode.AddHSM(cctx, t, n.Root, n.Addr, "b", false), "ADDHSM b")

	// On B alone: A's seal still there, but B unseals.
	n.Stop()
	n.Config, n.ExtraEnv = writeHSMConfig(t, b)
	n.MustStart()
	if !strings.Contains(n.Stdout(), "HSM         b") {
		t.Errorf("banner does not show HSM b:\n%s", n.Banner)
	}
	// A's root API key is a root on a node of B while A has a seal.
	n.Root = rootA
	decrypts("on B, with A's root API key")
	noErr(t, testnode.RemoveHSM(cctx, t, n.Root, n.Addr, "hsm:aes256"), "REMOVEHSM hsm:aes256")
	if _, err := n.RootClient(t).KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "k"}); testnode.StatusOf(err) != http.StatusForbidden {
		t.Errorf("A's root API key after A was removed: %s, want 403", testnode.DescribeErr(err))
	}
	n.Stop()
	n.MustStart()
	n.Root = b.RootAPIKey(t)
	decrypts("on B after A was removed")

	// A alone no longer starts the node, and says why in one line.
	n.Stop()
	n.Config, n.ExtraEnv = writeHSMConfig(t, a)
	err = n.Start()
	var se *testnode.StartError
	if !errors.As(err, &se) || se.Code == 0 || !strings.Contains(se.Stderr, "the cluster's HSMs are b, this node's are hsm:aes256") {
		t.Fatalf("start on the removed HSM: %v", err)
	}

	// The previous main's backup restores on a fresh node of B... only if
	// B has a seal in it: it has not, so the backup is refused cleanly.
	fresh := testnode.Start(t, testnode.Options{Name: "fresh-b", HSMKey: hsmKey(b)})
	err = fresh.RootClient(t).WriteDB(ctx, &kms.WriteDBRequest{Host: fresh.Addr, Body: bytes.NewReader(backup)})
	if testnode.StatusOf(err) != http.StatusBadRequest {
		t.Errorf("restore of A's backup on a node of B: %s, want 400", testnode.DescribeErr(err))
	}
	// And on a fresh node of A, it restores, as before.
	freshA := testnode.Start(t, testnode.Options{Name: "fresh-a", HSMKey: hsmKey(a)})
	noErr(t, freshA.RootClient(t).WriteDB(ctx, &kms.WriteDBRequest{Host: freshA.Addr, Body: bytes.NewReader(backup)}), "restore the previous main's backup")
	d, err := freshA.RootClient(t).Decrypt(ctx, "", &kms.DecryptRequest{Name: "k", Ciphertext: g[0].Ciphertext})
	if err != nil || !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
		t.Fatalf("restored backup of the previous main: %s", testnode.DescribeErr(err))
	}
}
