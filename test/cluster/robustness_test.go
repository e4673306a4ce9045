package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/migrate"

	"github.com/keep-kms/keep/internal/failpoint"
	"github.com/keep-kms/keep/test/testnode"
)

var long = flag.Bool("long", false, "run the long form of the robustness suite (TestRobustness): more rounds of every fault")

// longRounds is how many rounds of every fault the long form runs; the
// short form, in CI, runs one.
const longRounds = 6

// robustnessConfig makes the nodes snapshot and compact their log every
// few dozen writes, so that the snapshot failpoints are hit within a
// second of load and a node down for a few seconds catches up from a
// snapshot (InstallSnapshot).
const robustnessConfig = "version: v1\ncluster:\n  snapshot_threshold: 64\n  snapshot_interval: 200ms\n  trailing_logs: 32\n  max_staleness: 3s\n"

// fault is one case of the robustness suite: it breaks the cluster while
// the workload runs and repairs it, or fails the test. k varies the target
// between rounds (leader or follower, one corruption or another).
type fault struct {
	name   string
	inject func(t *testing.T, c *cluster, w *workload, k int)
}

var faults = []fault{
	{"before-log-append", crashAt(failpoint.BeforeLogAppend)},
	{"after-log-append", crashAt(failpoint.AfterLogAppend)},
	{"before-apply", crashAt(failpoint.BeforeApply)},
	{"snapshot-persist", crashAt(failpoint.SnapshotPersist)},
	{"snapshot-install", crashInstallingSnapshot},
	{"log-move", crashMovingLog},
	{"torn-log-tail", tornLogTail},
	{"one-way-leader-to-follower", oneWay(true)},
	{"one-way-follower-to-leader", oneWay(false)},
	{"delay", degrade(linkFault{delay: 40 * time.Millisecond, jitter: 30 * time.Millisecond})},
	{"loss", degrade(linkFault{loss: 0.1, reset: 0.01})},
}

// TestRobustness runs, on a 3-node cluster, the failure matrix of etcd's
// robustness suite under client load (creates, deletes, key status,
// generate and decrypt through kms-go): a node killed at each failpoint
// (before and after the log append, before apply, in snapshot persist and
// install, in the move of the log out of kms.db) and restarted, a torn
// tail of a node's log, one-way partitions, delay and loss between nodes.
// After each fault it checks with porcupine that the history is
// linearizable, that no acknowledged write is lost and that every data
// key decrypts on every node. -long runs more rounds.
func TestRobustness(t *testing.T) {
	if testing.Short() {
		t.Skip("kills, corrupts and partitions nodes for a minute or more")
	}
	rounds := 1
	if *long {
		rounds = longRounds
	}
	c := newCluster(t, 3, clusterOpts{proxied: true, failpoints: true, config: robustnessConfig})
	c.form()
	c.nodes[0].DeleteAtOnce(t) // the model's delete removes the key
	var total workloadStats
	var runs int
	injected := map[string]int{}
	for round := range rounds {
		for i, f := range faults {
			ok := t.Run(fmt.Sprintf("%s/%d", f.name, round), func(t *testing.T) {
				c := c.with(t)
				w := startWorkload(c, fmt.Sprintf("r%d-%d", round, i), true)
				time.Sleep(time.Second) // load before the fault
				f.inject(t, c, w, round+i)
				injected[f.name]++
				time.Sleep(time.Second) // load after the repair
				st := w.check(t)
				runs++
				total.ops += st.ops
				total.writes += st.writes
				total.reads += st.reads
				total.ambiguous += st.ambiguous
				total.acked += st.acked
				total.decrypts += st.decrypts
				total.violations += st.violations
			})
			if !ok && !c.running() {
				t.Fatalf("%s left nodes down: the following faults would fail for it", f.name)
			}
		}
	}
	var n int
	for _, k := range injected {
		n += k
	}
	t.Logf("robustness: %d runs, %d faults injected (%v), %d operations checked (%d writes, %d reads, %d ambiguous), %d keys acknowledged, %d data keys decrypted at the end, %d violations",
		runs, n, injected, total.ops, total.writes, total.reads, total.ambiguous, total.acked, total.decrypts, total.violations)
}

// running reports whether every node runs.
func (c *cluster) running() bool {
	return !slices.ContainsFunc(c.nodes, func(n *testnode.Node) bool { return !n.Running() })
}

// target picks the leader for even k and a follower for odd k.
func target(c *cluster, k int) (node int, role string) {
	l := c.lead()
	if k%2 == 0 {
		return l, "leader"
	}
	return c.others(l)[k/2%2], "follower"
}

// crashAt arms failpoint fp on the leader or a follower, waits until the
// node hits it and is killed, and restarts it.
func crashAt(fp failpoint.Name) func(t *testing.T, c *cluster, w *workload, k int) {
	return func(t *testing.T, c *cluster, w *workload, k int) {
		i, role := target(c, k)
		w.rec.event("arm %s on %s n%d", fp, role, i)
		c.armFailpoint(t, i, fp, `return("kill")`)
		c.waitKilled(t, i, fp, 30*time.Second)
		w.rec.event("n%d killed at %s", i, fp)
		t.Logf("%s n%d killed at %s", role, i, fp)
		c.restart(i)
		w.rec.event("n%d restarted", i)
	}
}

// armFailpoint sets the terms of failpoint fp on node i through its gofail
// endpoint.
func (c *cluster) armFailpoint(t *testing.T, i int, fp failpoint.Name, terms string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 5*time.Second), http.MethodPut, "http://"+c.failHTTP[i]+"/"+string(fp), strings.NewReader(terms))
	noErr(t, err, "failpoint request")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// A point that is hit at once kills the node before it answers;
		// waitKilled then tells how it ended.
		if _, exited := c.nodes[i].Wait(5 * time.Second); exited {
			return
		}
	}
	noErr(t, err, "arm %s on node %d", fp, i)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("arm %s on node %d: %s", fp, i, resp.Status)
	}
}

// waitKilled waits until node i was killed by a failpoint.
func (c *cluster) waitKilled(t *testing.T, i int, fp failpoint.Name, timeout time.Duration) {
	t.Helper()
	code, exited := c.nodes[i].Wait(timeout)
	if !exited {
		t.Fatalf("node %d did not hit failpoint %s within %v", i, fp, timeout)
	}
	if code != -1 {
		t.Fatalf("node %d exited with code %d, not killed at failpoint %s:\n%s", i, code, fp, testnode.Tail(c.nodes[i].Stderr(), 4096))
	}
}

// startWithFailpoints starts node i with the failpoints of GOFAIL_FAILPOINTS
// set to terms, armed from its first instruction.
func (c *cluster) startWithFailpoints(i int, terms string) error {
	n := c.nodes[i]
	base := n.ExtraEnv
	n.ExtraEnv = append(slices.Clip(base), "GOFAIL_FAILPOINTS="+terms)
	defer func() { n.ExtraEnv = base }()
	return n.Start()
}

// crashInstallingSnapshot stops a follower until the leader has compacted
// the entries it lacks, then starts it with the restore failpoint armed
// past the restore of its own snapshot: it is killed as it installs the
// leader's snapshot, and catches up after a restart.
func crashInstallingSnapshot(t *testing.T, c *cluster, w *workload, k int) {
	l := c.lead()
	f := c.others(l)[k%2]
	vs := c.waitHealthy(c.others(), 30*time.Second)
	last := vs[f].commit
	c.nodes[f].Kill()
	w.rec.event("n%d killed at commit %d", f, last)
	// The leader keeps trailing_logs (32) entries behind its snapshot.
	deadline := time.Now().Add(30 * time.Second)
	for newestSnapshot(t, c.nodes[l].Dir) <= last+40 {
		if time.Now().After(deadline) {
			t.Fatalf("leader n%d took no snapshot past index %d within 30s", l, last+40)
		}
		time.Sleep(100 * time.Millisecond)
	}
	skip := 0
	if newestSnapshot(t, c.nodes[f].Dir) > 0 {
		// The node restores its own snapshot as it starts (raft; the
		// configuration comes from the snapshot's metadata, see
		// cluster.configuration).
		skip = 1
	}
	// A starting follower installs the snapshot before it serves (CatchUp
	// waits for its first lease): it may die before it is up.
	err := c.startWithFailpoints(f, fmt.Sprintf(`%s=%d*off->return("kill")`, failpoint.SnapshotRestore, skip))
	var se *testnode.StartError
	if !errors.As(err, &se) || se.Code != -1 {
		noErr(t, err, "start n%d", f)
		c.waitKilled(t, f, failpoint.SnapshotRestore, 30*time.Second)
	}
	// Raft stores a snapshot it receives before it restores it.
	if got := newestSnapshot(t, c.nodes[f].Dir); got <= last+40 {
		t.Fatalf("n%d was killed restoring a snapshot at index %d, not the leader's", f, got)
	}
	w.rec.event("n%d killed installing a snapshot", f)
	t.Logf("follower n%d killed as it installed the leader's snapshot", f)
	c.restart(f)
	w.rec.event("n%d restarted", f)
}

// newestSnapshot returns the index of the newest complete snapshot in the
// data directory dir, 0 if none (raft names them TERM-INDEX-MILLIS).
func newestSnapshot(t *testing.T, dir string) uint64 {
	entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var newest uint64
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") || len(parts) != 3 {
			continue
		}
		if idx, err := strconv.ParseUint(parts[1], 10, 64); err == nil {
			newest = max(newest, idx)
		}
	}
	return newest
}

// crashMovingLog stops a follower and moves its raft log into kms.db, where
// earlier versions of Keep kept it; the node is killed as it moves the log
// back into the WAL, after the copy and before the delete, and must start
// and catch up after that.
func crashMovingLog(t *testing.T, c *cluster, w *workload, k int) {
	f := c.others(c.lead())[k%2]
	c.nodes[f].Kill()
	w.rec.event("n%d killed", f)
	moved := logToBolt(t, c.nodes[f].Dir)
	err := c.startWithFailpoints(f, fmt.Sprintf(`%s=return("kill")`, failpoint.LogMove))
	var se *testnode.StartError
	if !errors.As(err, &se) || se.Code != -1 {
		t.Fatalf("n%d with its log in kms.db did not die moving it: %v", f, err)
	}
	w.rec.event("n%d killed moving %d entries", f, moved)
	t.Logf("follower n%d killed moving %d entries out of kms.db", f, moved)
	c.restart(f)
	w.rec.event("n%d restarted", f)
}

// logToBolt moves the raft log of the stopped node in dir from the WAL into
// kms.db and returns how many entries it moved.
func logToBolt(t *testing.T, dir string) uint64 {
	t.Helper()
	db, err := raftboltdb.NewBoltStore(filepath.Join(dir, "kms.db"))
	noErr(t, err, "open kms.db")
	defer db.Close()
	meta := &metadb.BoltMetaDB{}
	log, err := wal.Open(filepath.Join(dir, "wal"), wal.WithMetaStore(meta))
	noErr(t, err, "open the WAL")
	first, _ := log.FirstIndex()
	last, _ := log.LastIndex()
	err = migrate.CopyLogs(context.Background(), db, log, 1<<20, nil)
	log.Close()
	meta.Close()
	noErr(t, err, "copy the log into kms.db")
	noErr(t, os.RemoveAll(filepath.Join(dir, "wal")), "remove the WAL")
	return last - first + 1
}

// tornLogTail stops a follower and damages the end of the data in its
// newest WAL segment, as a crash in the middle of a write may: cut short
// (even k) or overwritten with garbage (odd k). raft-wal discards the
// batch whose commit frame's checksum fails, or that is cut short, and the
// node catches up from the leader.
func tornLogTail(t *testing.T, c *cluster, w *workload, k int) {
	f := c.others(c.lead())[k/2%2]
	c.nodes[f].Kill()
	seg := newestSegment(t, filepath.Join(c.nodes[f].Dir, "wal"))
	data, err := os.ReadFile(seg)
	noErr(t, err, "read %s", seg)
	end := len(bytes.TrimRight(data, "\x00"))
	if end < 1024 {
		t.Fatalf("%s holds only %d bytes", seg, end)
	}
	how := "cut short"
	if k%2 == 0 {
		noErr(t, os.Truncate(seg, int64(end-40)), "truncate %s", seg)
	} else {
		how = "overwritten"
		garbage := bytes.Repeat([]byte{0xa5}, 64)
		copy(data[end-80:], garbage)
		noErr(t, os.WriteFile(seg, data, 0o600), "write %s", seg)
	}
	w.rec.event("n%d killed, the tail of its log %s", f, how)
	t.Logf("follower n%d: the last bytes of %s (%d bytes of data) %s", f, filepath.Base(seg), end, how)
	c.restart(f)
	w.rec.event("n%d restarted", f)
}

// newestSegment returns the path of the WAL segment file with the highest
// base index in dir (raft-wal names them BASEINDEX-ID.wal).
func newestSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	noErr(t, err, "list %s", dir)
	if len(segs) == 0 {
		t.Fatalf("no WAL segment in %s", dir)
	}
	slices.Sort(segs) // zero-padded: the name order is the index order
	return segs[len(segs)-1]
}

// oneWay cuts, for 3 s, the connections that the leader opens to a
// follower (leaderToFollower) or those the follower opens to the leader:
// the other direction still works.
func oneWay(leaderToFollower bool) func(t *testing.T, c *cluster, w *workload, k int) {
	return func(t *testing.T, c *cluster, w *workload, k int) {
		l := c.lead()
		f := c.others(l)[k%2]
		p, what := pair{l, f}, fmt.Sprintf("leader n%d cannot reach follower n%d", l, f)
		if !leaderToFollower {
			p, what = pair{f, l}, fmt.Sprintf("follower n%d cannot reach leader n%d", f, l)
		}
		healed := w.cutOff(f, "%s (blackhole)", what)
		c.net.setCut([]pair{p}, blackhole)
		time.Sleep(3 * time.Second)
		c.net.heal()
		healed()
		t.Logf("%s for 3s", what)
		c.waitHealthy(c.others(), 30*time.Second)
	}
}

// degrade applies f to the data between every two nodes, both ways, for
// 4 s. The nodes stay connected: their reads are checked as any others.
func degrade(f linkFault) func(t *testing.T, c *cluster, w *workload, k int) {
	return func(t *testing.T, c *cluster, w *workload, k int) {
		var dirs []pair
		for i := range c.nodes {
			for j := range c.nodes {
				if i != j {
					dirs = append(dirs, pair{i, j})
				}
			}
		}
		w.rec.event("links: %v", f)
		c.net.setFault(dirs, f)
		time.Sleep(4 * time.Second)
		c.net.heal()
		w.rec.event("links healed")
		t.Logf("every link: %v for 4s", f)
		c.waitHealthy(c.others(), 30*time.Second)
	}
}
