package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// TestCatchUpFromSnapshot lets a node fall so far behind that the leader
// has compacted the entries it misses, so that it must catch up from a
// snapshot (InstallSnapshot).
//
// With raft's default snapshot settings that takes more than 10,240 writes
// and minutes of waiting, so the nodes run with small ones from the config
// (cluster.snapshot_threshold, snapshot_interval, trailing_logs).
func TestCatchUpFromSnapshot(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{config: "version: v1\ncluster:\n  snapshot_threshold: 100\n  snapshot_interval: 200ms\n  trailing_logs: 50\n"})
	c.form()
	const enclave = "snap"
	noErr(t, c.client().CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave")
	l := c.lead()
	f := c.others(l)[0]
	c.nodes[f].Kill()

	const writes, writers = 600, 16
	var next atomic.Int64
	var failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		cl := c.client(c.others(f)...)
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= writes {
					return
				}
				ctx, cancel := ctxD(10 * time.Second)
				if err := cl.CreateKey(ctx, enclave, &kms.CreateKeyRequest{Name: fmt.Sprintf("k-%d", i)}); err != nil {
					failed.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d writes by %d writers in %v (%.0f/s), %d failed", writes, writers, took.Round(time.Millisecond), writes/took.Seconds(), failed.Load())

	// Wait for the leader to snapshot (and compact its log).
	snapDir := filepath.Join(c.nodes[l].Dir, "snapshots")
	start = time.Now()
	for {
		entries, _ := os.ReadDir(snapDir)
		if len(entries) > 0 {
			break
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("leader took no snapshot within 5 min")
		}
		time.Sleep(time.Second)
	}
	t.Logf("leader snapshot after %v", time.Since(start).Round(time.Second))

	start = time.Now()
	c.nodes[f].MustStart()
	c.waitHealthy(c.others(), time.Minute)
	t.Logf("node %d caught up %v after its restart", f, time.Since(start).Round(time.Millisecond))
	entries, _ := os.ReadDir(filepath.Join(c.nodes[f].Dir, "snapshots"))
	if len(entries) == 0 {
		t.Errorf("node %d caught up without installing a snapshot", f)
	}
	cl := c.client(f)
	for _, i := range []int{0, writes / 2, writes - 1} {
		if _, err := cl.KeyStatus(ctxT(t, 5*time.Second), enclave, &kms.KeyStatusRequest{Name: fmt.Sprintf("k-%d", i)}); err != nil {
			t.Errorf("node %d: key k-%d: %s", f, i, testnode.DescribeErr(err))
		}
	}
}
