package attack

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/promrules"
	"github.com/keep-kms/keep/test/testnode"
)

// offsetsPerFile is how many spread offsets of each file are flipped.
const offsetsPerFile = 16

// TestTamperedBackup flips one bit at 16 spread offsets of a backup, as
// sent (decompressed) and gzip-compressed again, and of the compressed
// file as `keep backup` saves it: every restore is refused and applies
// nothing; the untouched backup then restores.
func TestTamperedBackup(t *testing.T) {
	hsmKey := testnode.NewHSMKey(t)
	src := testnode.Start(t, testnode.Options{Name: "source", HSMKey: hsmKey})
	f := populate(t, src.RootClient(t))
	backup := readBackup(t, src)
	dst := testnode.Start(t, testnode.Options{Name: "target", HSMKey: hsmKey})
	dstClient := dst.RootClient(t)

	for i, off := range spreadOffsets(len(backup), offsetsPerFile, 1) {
		bad := flip(backup, off, uint64(i))
		for _, v := range []struct {
			name string
			data []byte
		}{{"raw", bad}, {"gzip", gzipped(bad)}} {
			if err := restore(t, dst, v.data, false); err == nil {
				t.Fatalf("backup with byte %d of %d flipped (%s) was restored", off, len(backup), v.name)
			} else if s := testnode.StatusOf(err); s != 400 {
				t.Fatalf("backup with byte %d flipped (%s): %s, want 400", off, v.name, testnode.DescribeErr(err))
			}
		}
		// The operator's flag for legacy backups does not let a changed
		// authenticated one through.
		if err := restore(t, dst, bad, true); err == nil {
			t.Fatalf("backup with byte %d flipped was restored with ?unauthenticated-legacy", off)
		}
	}
	compressed := gzipped(backup)
	for i, off := range spreadOffsets(len(compressed), offsetsPerFile, 2) {
		if err := restore(t, dst, flip(compressed, off, uint64(i)), false); err == nil {
			t.Fatalf("compressed backup with byte %d of %d flipped was restored", off, len(compressed))
		}
	}
	wantFresh(t, dstClient, "after tampered backups")

	if err := restore(t, dst, backup, false); err != nil {
		t.Fatalf("the untouched backup: %s", testnode.DescribeErr(err))
	}
	f.check(t, dstClient, "restored")
}

// TestRestoreInjectedSysAdmin appends an identity with SysAdmin privilege
// to a backup, keeping everything else, and restores it: refused, and the
// injected key is nobody.
func TestRestoreInjectedSysAdmin(t *testing.T) {
	hsmKey := testnode.NewHSMKey(t)
	src := testnode.Start(t, testnode.Options{Name: "source", HSMKey: hsmKey})
	populate(t, src.RootClient(t))
	attacker := testnode.NewAPIKey(t)
	forged := editState(t, readBackup(t, src), injectSysAdmin(attacker.Identity().String()))

	dst := testnode.Start(t, testnode.Options{Name: "target", HSMKey: hsmKey})
	for _, legacy := range []bool{false, true} {
		err := restore(t, dst, forged, legacy)
		if err == nil {
			t.Errorf("the backup with an injected SysAdmin was restored (legacy flag %v)", legacy)
			break
		}
		t.Logf("refused (legacy flag %v): %v", legacy, err)
	}
	if _, err := dst.Client(t, attacker).ListEnclaves(tctx(t), &kms.ListRequest{}); err == nil {
		t.Fatal("the injected identity acts as SysAdmin")
	}
	wantFresh(t, dst.RootClient(t), "after the forged backup")
}

// TestRestoreMovedKeyVersion moves sealed key material to another version
// and another type in a backup whose MAC is computed again (what a holder
// of the HSM key could do; a backup of format 1 has no MAC to compute):
// the key AAD binds version and type, so the restore is refused.
func TestRestoreMovedKeyVersion(t *testing.T) {
	hsmKey := testnode.NewHSMKey(t)
	src := testnode.Start(t, testnode.Options{Name: "source", HSMKey: hsmKey})
	populate(t, src.RootClient(t))
	backup := readBackup(t, src)
	versions := func(m map[string]any, key string) []any {
		for _, e := range m["enclaves"].([]any) {
			enc := e.(map[string]any)
			if enc["Name"] != tamperEnclave {
				continue
			}
			for _, k := range enc["keys"].([]any) {
				if k.(map[string]any)["name"] == key {
					return k.(map[string]any)["versions"].([]any)
				}
			}
		}
		t.Fatalf("no key %s in the backup", key)
		return nil
	}
	dst := testnode.Start(t, testnode.Options{Name: "target", HSMKey: hsmKey})
	for name, edit := range map[string]func(map[string]any){
		"versions swapped": func(m map[string]any) {
			v := versions(m, "aes")
			a, b := v[0].(map[string]any), v[1].(map[string]any)
			a["sealed"], b["sealed"] = b["sealed"], a["sealed"]
		},
		"type changed": func(m map[string]any) {
			versions(m, "chacha")[0].(map[string]any)["type"] = "AES256"
		},
	} {
		forged := remac(t, hsmKey, editState(t, backup, edit))
		if err := restore(t, dst, forged, true); err == nil {
			t.Fatalf("%s: the backup was restored", name)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
	wantFresh(t, dst.RootClient(t), "after the forged backups")
	if err := restore(t, dst, remac(t, hsmKey, backup), false); err != nil {
		t.Fatalf("the untouched backup: %s", testnode.DescribeErr(err))
	}
}

// snapshotConfig makes a node snapshot its state after a few writes.
const snapshotConfig = "version: v1\ncluster:\n  snapshot_threshold: 4\n  snapshot_interval: 100ms\n"

// TestTamperedSnapshot flips one bit at 16 spread offsets of the newest
// raft snapshot of a stopped node (fixing raft's CRC and size, as an
// attacker would), and injects a SysAdmin into it: the node refuses to
// start, naming the file, and so applies nothing.
func TestTamperedSnapshot(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(t.TempDir(), "keep.yaml")
	if err := os.WriteFile(config, []byte(snapshotConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	n := testnode.Start(t, testnode.Options{Name: "snapshots", Dir: dir, Config: config})
	f := populate(t, n.RootClient(t))
	waitSnapshot(t, dir)
	n.Stop()

	pristine := filepath.Join(t.TempDir(), "pristine")
	copyDir(t, dir, pristine)
	snap := newestSnapshot(t, dir)
	state, err := os.ReadFile(filepath.Join(snap, "state.bin"))
	if err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(snap, "state.bin")
	for i, off := range spreadOffsets(len(state), offsetsPerFile, 3) {
		copyDir(t, pristine, dir)
		writeSnapshot(t, snap, flip(state, off, uint64(i)))
		wantRefusedStart(t, n, "snapshot with byte "+itoa(off)+" flipped", statePath)
	}
	attacker := testnode.NewAPIKey(t)
	copyDir(t, pristine, dir)
	writeSnapshot(t, snap, editState(t, state, injectSysAdmin(attacker.Identity().String())))
	wantRefusedStart(t, n, "snapshot with an injected SysAdmin", statePath)

	// A flipped byte that raft's CRC catches is refused as well.
	copyDir(t, pristine, dir)
	if err := os.WriteFile(statePath, flip(state, len(state)/2, 0), 0o600); err != nil {
		t.Fatal(err)
	}
	wantRefusedStart(t, n, "snapshot with a wrong CRC", statePath)

	copyDir(t, pristine, dir)
	n.MustStart()
	f.check(t, n.RootClient(t), "untouched snapshot")
}

// waitSnapshot waits until the node has written a raft snapshot.
func waitSnapshot(t *testing.T, dir string) {
	t.Helper()
	for range 200 {
		if m, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin")); len(m) > 0 {
			return
		}
		sleep()
	}
	t.Fatal("the node wrote no snapshot")
}

// entryRE finds log entries of Keep in a WAL segment: the JSON of an entry
// (raft-wal stores raft's entries with their data as is).
var entryRE = regexp.MustCompile(`\{"op":"[a-z.]+"[^\x00]*?"\}`)

// TestTamperedLog flips one bit at 16 spread offsets inside the payloads
// of log entries in the WAL segment of a stopped node: the node refuses to
// start, naming the entry and the log, and so applies nothing.
func TestTamperedLog(t *testing.T) {
	dir := t.TempDir()
	n := testnode.Start(t, testnode.Options{Name: "wal", Dir: dir})
	f := populate(t, n.RootClient(t))
	// Later writes, so that the entries flipped are not in the last batch,
	// the only one whose CRC raft-wal checks (it drops a torn tail).
	for _, name := range []string{"pad-1", "pad-2", "pad-3"} {
		if err := n.RootClient(t).CreateKey(tctx(t), tamperEnclave, &kms.CreateKeyRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	n.Stop()

	segments, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if len(segments) != 1 {
		t.Fatalf("WAL segments: %v", segments)
	}
	segment, err := os.ReadFile(segments[0])
	if err != nil {
		t.Fatal(err)
	}
	// The payload region: every byte of the entries but those of the last
	// three (the padding writes).
	var region []int
	locs := entryRE.FindAllIndex(segment, -1)
	if len(locs) < 8 {
		t.Fatalf("found %d entries in the segment", len(locs))
	}
	for _, loc := range locs[:len(locs)-3] {
		for o := loc[0]; o < loc[1]; o++ {
			region = append(region, o)
		}
	}
	pristine := filepath.Join(t.TempDir(), "pristine")
	copyDir(t, dir, pristine)
	for i, k := range spreadOffsets(len(region), offsetsPerFile, 4) {
		off := region[k]
		copyDir(t, pristine, dir)
		if err := os.WriteFile(segments[0], flip(segment, off, uint64(i)), 0o600); err != nil {
			t.Fatal(err)
		}
		wantRefusedStart(t, n, "WAL with byte "+itoa(off)+" flipped", filepath.Join(dir, "wal"))
	}
	copyDir(t, pristine, dir)
	n.MustStart()
	f.check(t, n.RootClient(t), "untouched log")
}

// TestUpgradeFromOldData writes a data directory and a backup with the
// keep of main before this change, then starts the new keep on it: it
// serves every old key and identity, writes an authenticated snapshot and
// authenticated entries from then on, and restores the old backup only
// with the operator's flag.
func TestUpgradeFromOldData(t *testing.T) {
	old := oldBinary(t)
	hsmKey := testnode.NewHSMKey(t)
	dir := t.TempDir()
	n := testnode.New(t, testnode.Options{Name: "upgraded", Dir: dir, HSMKey: hsmKey})
	startWith(t, n, old)
	f := populate(t, n.RootClient(t))
	legacyBackup := readBackup(t, n)
	if bytes.HasPrefix(legacyBackup, []byte("KEEP")) {
		t.Fatalf("%s writes authenticated backups: it is not the old keep", old)
	}
	n.Stop()

	n.MustStart()
	f.check(t, n.RootClient(t), "after the upgrade")
	// The node finishes the upgrade in the background once it has caught
	// up (snapshot, compaction, the format mark): under the race detector
	// and a loaded machine that can take a few seconds after the start.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(n.Logs(), "data directory upgraded"); sleep() {
		if time.Now().After(deadline) {
			t.Fatalf("the node did not say it upgraded the data directory within 30 s")
		}
	}
	snap, err := os.ReadFile(filepath.Join(newestSnapshot(t, dir), "state.bin"))
	if err != nil || !bytes.HasPrefix(snap, []byte("KEEPSNAP")) {
		t.Fatalf("the snapshot after the upgrade is not authenticated: %q, %v", snap[:min(len(snap), 16)], err)
	}
	if err := n.RootClient(t).CreateKey(tctx(t), tamperEnclave, &kms.CreateKeyRequest{Name: "after-upgrade"}); err != nil {
		t.Fatal(err)
	}
	n.Restart()
	f.check(t, n.RootClient(t), "after a restart of the upgraded node")
	segments, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	var wal []byte
	for _, s := range segments {
		data, _ := os.ReadFile(s)
		wal = append(wal, data...)
	}
	if i := bytes.Index(wal, []byte(`"name":"after-upgrade"`)); i < 0 || !bytes.Contains(wal[i:min(len(wal), i+1024)], []byte(`,"mac":"`)) {
		t.Errorf("the entry written after the upgrade carries no MAC")
	}

	// The old backup: refused without the flag, with advice; restored with
	// it through the CLI.
	dst := testnode.Start(t, testnode.Options{Name: "target", HSMKey: hsmKey})
	err = restore(t, dst, legacyBackup, false)
	if err == nil || !strings.Contains(err.Error(), "--unauthenticated-legacy") {
		t.Fatalf("legacy backup without the flag: %v", err)
	}
	file := filepath.Join(t.TempDir(), "old_kms.db.gzip")
	if err := os.WriteFile(file, gzipped(legacyBackup), 0o600); err != nil {
		t.Fatal(err)
	}
	r := testnode.CLI(t, []string{dst.Endpoint()}, dst.APIKey, "restore", "-k", "--unauthenticated-legacy", file)
	if r.Code != 0 {
		t.Fatalf("restore with --unauthenticated-legacy: %s", r)
	}
	f.check(t, dst.RootClient(t), "legacy backup restored")
}

// TestUpgradeClusterFromOldData forms a cluster of three nodes with the
// keep of main before this change, stops it, and starts every node with the
// new keep at once (the upgrade docs/ARCHITECTURE.md asks for): every node
// serves the old keys, and writes go on.
func TestUpgradeClusterFromOldData(t *testing.T) {
	nodes, first := oldCluster(t, 3)
	f := populate(t, first)
	for _, n := range nodes {
		n.Stop()
	}

	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.Start() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	for i, n := range nodes {
		f.check(t, n.RootClient(t), "node "+itoa(i)+" after the upgrade")
	}
	if err := nodes[1].RootClient(t).CreateKey(tctx(t), tamperEnclave, &kms.CreateKeyRequest{Name: "after-upgrade"}); err != nil {
		t.Fatalf("write after the upgrade: %s", testnode.DescribeErr(err))
	}
	for _, n := range nodes {
		n.Restart()
	}
	for i, n := range nodes {
		// A node that has just restarted may answer from a state a moment
		// old; one that diverged never holds the key.
		var err error
		for range 100 {
			if _, err = n.RootClient(t).KeyStatus(tctx(t), tamperEnclave, &kms.KeyStatusRequest{Name: "after-upgrade"}); err == nil {
				break
			}
			sleep()
		}
		if err != nil {
			t.Fatalf("node %d after a restart: %s", i, testnode.DescribeErr(err))
		}
	}
}

// TestRollingUpgradeStopsUpgradedFollower upgrades one follower of a
// cluster of the old keep and writes through an old node: its entries
// carry no MAC, so the upgraded follower refuses them and
// stops serving rather than apply them (docs/ARCHITECTURE.md, Mixed
// versions); the old nodes go on.
func TestRollingUpgradeStopsUpgradedFollower(t *testing.T) {
	nodes, _ := oldCluster(t, 3)
	up := nodes[2]
	up.Stop()
	up.MustStart()
	// A client of node 0 alone: kms-go's AddNode added the other nodes to
	// the first client, and a write that reaches the upgraded node is
	// authenticated (and applied by every node).
	if err := nodes[0].RootClient(t).CreateEnclave(tctx(t), &kms.CreateEnclaveRequest{Name: "during-upgrade"}); err != nil {
		t.Fatalf("write through an old node: %s", testnode.DescribeErr(err))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := up.RootClient(t).ListEnclaves(tctx(t), &kms.ListRequest{})
		if err != nil && strings.Contains(up.Stderr()+up.Stdout()+err.Error(), "tampered") {
			t.Logf("the upgraded follower refuses: %s", testnode.DescribeErr(err))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upgraded follower still serves after an unauthenticated entry: %v", err)
		}
		sleep()
	}
	if _, err := nodes[1].RootClient(t).ListEnclaves(tctx(t), &kms.ListRequest{}); err != nil {
		t.Fatalf("the old follower: %s", testnode.DescribeErr(err))
	}
	// What the alert KeepStateTampered watches.
	families := promrules.Scrape(t, testnode.HTTPClient(t, up.Root, 30*time.Second), up.Endpoint()+"/v1/health/metrics")
	if v, ok := promrules.Value(families, "keep_state_tampered", nil); !ok || v != 1 {
		t.Errorf("keep_state_tampered of the refusing follower = %v (present: %v), want 1", v, ok)
	}
}

// oldCluster forms a cluster of n nodes with the keep of main before this
// change, and returns them and a client of the first.
func oldCluster(t *testing.T, n int) ([]*testnode.Node, *kms.Client) {
	t.Helper()
	old := oldBinary(t)
	hsmKey := testnode.NewHSMKey(t)
	var nodes []*testnode.Node
	for i := range n {
		node := testnode.New(t, testnode.Options{Name: "node-" + itoa(i), HSMKey: hsmKey})
		startWith(t, node, old)
		nodes = append(nodes, node)
	}
	first := nodes[0].RootClient(t)
	for _, node := range nodes[1:] {
		if err := first.AddNode(tctx(t), &kms.AddClusterNodeRequest{Host: node.Host}); err != nil {
			t.Fatalf("add %s: %s", node.Host, testnode.DescribeErr(err))
		}
	}
	return nodes, first
}
