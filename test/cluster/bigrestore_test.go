package cluster_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
	"github.com/keep-kms/keep/test/testnode"
)

// bigRestoreKeys is the number of keys of TestRestoreLargeBackup's
// backup. The default makes one above 64 MiB, the most a restore took
// while it was one raft log entry (raft-wal's limit on an entry, and
// PUT /v1/db's); -bigrestore.keys=1000000 measures a million. Under the
// race detector (CI) building and restoring 300,000 keys takes minutes:
// the default is then a backup of 20,000 keys, which still goes the way
// of a large one (a raft snapshot, not a log entry: checked).
var bigRestoreKeys = flag.Int("bigrestore.keys", 0, "keys in the backup of TestRestoreLargeBackup (default 300,000; 20,000 under the race detector)")

// bigRestoreNodes is the size of TestRestoreLargeBackup's cluster; with 1
// the restore goes to the leader.
var bigRestoreNodes = flag.Int("bigrestore.nodes", 3, "nodes of the cluster of TestRestoreLargeBackup")

// TestRestoreLargeBackup restores, with `keep restore` through a follower,
// a backup larger than a raft log entry may be into a fresh 3-node
// cluster, restarts every node, and checks that every node lists every key
// of it and that its keys work on every node.
func TestRestoreLargeBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a backup of 300,000 keys")
	}
	keys := *bigRestoreKeys
	if keys == 0 {
		keys = 300_000
		if testnode.RaceEnabled() {
			keys = 20_000
		}
	}
	c := newCluster(t, *bigRestoreNodes, clusterOpts{})
	start := time.Now()
	file, size := largeBackup(t, c.hsm, keys)
	t.Logf("backup of %d keys: %d MB, %d MB gzipped, built in %v", keys, size>>20, fileSize(t, file)>>20, time.Since(start).Round(time.Millisecond))
	if keys >= 300_000 && size <= 64<<20 {
		t.Fatalf("the backup is %d bytes, not above 64 MiB", size)
	}
	c.form()
	l := c.lead()
	f := l
	if others := c.others(l); len(others) > 0 {
		f = others[0]
	}
	start = time.Now()
	c.cli(c.root.String(), []int{f}, "restore", c.nodes[f].Addr, file)
	t.Logf("restored through follower %d in %v; peak RSS of the nodes %v", f, time.Since(start).Round(time.Millisecond), peakRSS(t, c))
	// The restore reached every node as a raft snapshot, not as an entry
	// of the log (a node snapshots on its own only after 8,192 entries).
	for i, n := range c.nodes {
		if snaps, _ := os.ReadDir(filepath.Join(n.Dir, "snapshots")); len(snaps) == 0 {
			t.Errorf("node %d holds no raft snapshot after the restore", i)
		}
	}

	// Every node starts again from what the restore left on its disk (a
	// restore in one log entry above 64 MiB left a log that raft-wal
	// refuses to read: "WAL is corrupt").
	for _, n := range c.nodes {
		n.Stop()
		if err := n.Start(); err != nil {
			t.Fatalf("restart after the restore: %v", err)
		}
	}
	c.waitHealthy(allIdx(len(c.nodes)), 30*time.Second)
	l = c.lead()

	ctx := ctxT(t, 2*time.Minute)
	for i := range c.nodes {
		cl := c.client(i)
		n := 0
		next := ""
		for {
			page, err := cl.ListKeys(ctx, &kms.ListRequest{ContinueAt: next, Limit: 1000})
			noErr(t, err, "node %d: list keys at %q", i, next)
			for _, k := range page.Items {
				if want := bigRestoreKeyName(n); k.Name != want {
					t.Fatalf("node %d: key %d is %q, want %q", i, n, k.Name, want)
				}
				n++
			}
			if next = page.ContinueAt; next == "" {
				break
			}
		}
		if n != keys {
			t.Fatalf("node %d lists %d keys, want %d", i, n, keys)
		}
	}
	// The material unseals on every node: a data key made on one
	// decrypts on the others.
	for _, j := range []int{0, keys / 2, keys - 1} {
		name := bigRestoreKeyName(j)
		dek, err := c.client(l).GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: name, AssociatedData: []byte(name)})
		noErr(t, err, "generate with %s", name)
		for i := range c.nodes {
			pt, err := c.client(i).Decrypt(ctx, "", &kms.DecryptRequest{Name: name, Ciphertext: dek[0].Ciphertext, AssociatedData: []byte(name)})
			noErr(t, err, "node %d: decrypt with %s", i, name)
			if !bytes.Equal(pt[0].Plaintext, dek[0].Plaintext) {
				t.Fatalf("node %d: %s decrypts to another plaintext", i, name)
			}
		}
	}
	// The cluster takes writes after the restore, and is not fresh.
	names, _ := createKeys(t, c.client(f), "", "after-restore", 2)
	for i := range c.nodes {
		c.wantKeys(t, i, "", names)
	}
	r := testnode.CLI(t, []string{c.nodes[l].Endpoint()}, c.root.String(), "restore", c.nodes[l].Addr, file, "-k")
	if r.Code == 0 {
		t.Fatal("a second restore into the restored cluster succeeded")
	}
	// And it is backed up again whole.
	start = time.Now()
	again := filepath.Join(t.TempDir(), "again_kms.db.gzip")
	c.cli(c.root.String(), []int{f}, "backup", again)
	t.Logf("backed up through follower %d in %v (%d MB gzipped); peak RSS of the nodes %v", f, time.Since(start).Round(time.Millisecond), fileSize(t, again)>>20, peakRSS(t, c))
	if got, want := gunzippedSize(t, again), size; got < want {
		t.Errorf("the backup of the restored cluster is %d bytes, the restored one %d", got, want)
	}
}

// peakRSS returns the peak resident memory (VmHWM) of each node, in MB.
func peakRSS(t *testing.T, c *cluster) []int {
	t.Helper()
	var mb []int
	for _, n := range c.nodes {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.PID()))
		if err != nil {
			t.Fatal(err)
		}
		var kb int
		for line := range strings.Lines(string(status)) {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			}
		}
		mb = append(mb, kb>>10)
	}
	return mb
}

func gunzippedSize(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, zr)
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func bigRestoreKeyName(i int) string { return fmt.Sprintf("big-%07d", i) }

// largeBackup writes the gzipped backup of a cluster of the HSM key
// hsmKey with keys AES keys (bigRestoreKeyName), made in-process, and
// returns the file and the backup's size uncompressed.
func largeBackup(t *testing.T, hsmKey string, keys int) (string, int) {
	t.Helper()
	soft, err := hsm.ParseSoftKey(hsmKey)
	if err != nil {
		t.Fatal(err)
	}
	ring := hsm.NewKeyring(soft)
	root := make([]byte, 32)
	rand.Read(root)
	seals, err := ring.Seal(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := hsm.EncodeSeals(seals, root)
	if err != nil {
		t.Fatal(err)
	}
	s := state.New(ring)
	apply := func(e *state.Entry) {
		data, err := s.EncodeEntry(e)
		if err == nil {
			err = s.Apply(data)
		}
		if err != nil {
			t.Fatalf("apply %s %s: %v", e.Op, e.Name, err)
		}
	}
	now := time.Now().UTC()
	apply(&state.Entry{Op: state.OpInit, Time: now, Init: &state.InitArgs{ClusterID: "big-backup", SealedRootKey: sealed}})
	for i := range keys {
		material, err := crypto.GenerateKey(crypto.AES256, nil)
		if err != nil {
			t.Fatal(err)
		}
		name := bigRestoreKeyName(i)
		sk, err := s.SealKey(state.DefaultEnclave, name, 1, material)
		if err != nil {
			t.Fatal(err)
		}
		apply(&state.Entry{Op: state.OpCreateKey, Enclave: state.DefaultEnclave, Name: name, Time: now, Key: &state.KeyArgs{Type: crypto.AES256, Version: 1, Sealed: sk}})
	}
	var raw countingWriter
	path := filepath.Join(t.TempDir(), "big_kms.db.gzip")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.BestSpeed)
	raw.w = zw
	if err := s.Backup(&raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return path, raw.n
}

type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += n
	return n, err
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
