package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"

	"github.com/keep-kms/keep/test/testnode"
)

// beforeHSMs is the last main before a cluster could have several HSMs: its
// data directories and backups hold the root key sealed by one soft HSM key,
// with no name.
const beforeHSMs = "db195a7"

// addHSM sends CLUSTER:ADDHSM (command 5) with the pinned client; its
// message is wire-identical to RemoveClusterNodeRequest (spec upstream §15).
func addHSM(ctx context.Context, c *kms.Client, name string, overwrite bool) error {
	body, err := cmds.EncodePB(nil, cmds.Command(5), &pb.RemoveClusterNodeRequest{Host: name, DeleteClusterOnHost: overwrite})
	if err != nil {
		return err
	}
	resp, err := c.Send(ctx, &kms.Request{Body: body})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// removeHSM sends CLUSTER:REMOVEHSM (command 6), wire-identical to
// CreateEnclaveRequest.
func removeHSM(ctx context.Context, c *kms.Client, name string) error {
	body, err := cmds.EncodePB(nil, cmds.Command(6), &pb.CreateEnclaveRequest{Name: name})
	if err != nil {
		return err
	}
	resp, err := c.Send(ctx, &kms.Request{Body: body})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// hsmRoot is the root API key that the soft HSM key derives.
func hsmRoot(t *testing.T, hsmKey string) mtls.PrivateKey {
	t.Helper()
	k, err := testnode.HSMRootAPIKey(hsmKey)
	if err != nil {
		t.Fatal(err)
	}
	return testnode.ParseAPIKey(t, k)
}

// writeHSMConfig writes a config file listing soft HSMs, each by the name
// of the environment variable that holds its key.
func writeHSMConfig(t *testing.T, dir string, hsms ...[2]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("version: v1\nhsm:\n")
	for _, h := range hsms {
		b.WriteString("  - name: " + h[0] + "\n    soft:\n      key_env: " + h[1] + "\n")
	}
	path := filepath.Join(dir, "keep.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
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
	keyA, keyB := testnode.NewHSMKey(t), testnode.NewHSMKey(t)
	n := testnode.New(t, testnode.Options{Name: "upgraded", Dir: t.TempDir(), HSMKey: keyA})
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
	rootB := hsmRoot(t, keyB)
	n.ExtraEnv = []string{"KEEP_TEST_KEY_A=" + keyA, "KEEP_TEST_KEY_B=" + keyB}
	n.Config = writeHSMConfig(t, t.TempDir(), [2]string{"hsm:aes256", "KEEP_TEST_KEY_A"}, [2]string{"b", "KEEP_TEST_KEY_B"})
	n.MustStart()
	decrypts("upgraded, on A")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	noErr(t, addHSM(cctx, n.RootClient(t), "b", false), "ADDHSM b")

	// On B alone: A's seal still there, but B unseals.
	n.Stop()
	n.Config = writeHSMConfig(t, t.TempDir(), [2]string{"b", "KEEP_TEST_KEY_B"})
	n.MustStart()
	if !strings.Contains(n.Stdout(), "HSM         b") {
		t.Errorf("banner does not show HSM b:\n%s", n.Banner)
	}
	// A's root API key is a root on a node of B while A has a seal.
	n.Root = rootA
	decrypts("on B, with A's root API key")
	noErr(t, removeHSM(cctx, n.RootClient(t), "hsm:aes256"), "REMOVEHSM hsm:aes256")
	if _, err := n.RootClient(t).KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "k"}); testnode.StatusOf(err) != http.StatusForbidden {
		t.Errorf("A's root API key after A was removed: %s, want 403", testnode.DescribeErr(err))
	}
	n.Stop()
	n.MustStart()
	n.Root = rootB
	decrypts("on B after A was removed")

	// A alone no longer starts the node, and says why in one line.
	n.Stop()
	n.Config = writeHSMConfig(t, t.TempDir(), [2]string{"hsm:aes256", "KEEP_TEST_KEY_A"})
	err = n.Start()
	var se *testnode.StartError
	if !errors.As(err, &se) || se.Code == 0 || !strings.Contains(se.Stderr, "the cluster's HSMs are b, this node's are hsm:aes256") {
		t.Fatalf("start on the removed HSM: %v", err)
	}

	// The previous main's backup restores on a fresh node of B... only if
	// B has a seal in it: it has not, so the backup is refused cleanly.
	fresh := testnode.Start(t, testnode.Options{Name: "fresh-b", HSMKey: keyB})
	err = fresh.RootClient(t).WriteDB(ctx, &kms.WriteDBRequest{Host: fresh.Addr, Body: bytes.NewReader(backup)})
	if testnode.StatusOf(err) != http.StatusBadRequest {
		t.Errorf("restore of A's backup on a node of B: %s, want 400", testnode.DescribeErr(err))
	}
	// And on a fresh node of A, it restores, as before.
	freshA := testnode.Start(t, testnode.Options{Name: "fresh-a", HSMKey: keyA})
	noErr(t, freshA.RootClient(t).WriteDB(ctx, &kms.WriteDBRequest{Host: freshA.Addr, Body: bytes.NewReader(backup)}), "restore the previous main's backup")
	d, err := freshA.RootClient(t).Decrypt(ctx, "", &kms.DecryptRequest{Name: "k", Ciphertext: g[0].Ciphertext})
	if err != nil || !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
		t.Fatalf("restored backup of the previous main: %s", testnode.DescribeErr(err))
	}
}
