package cluster_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// members returns node via's view of the cluster: node index → raft ID.
func (c *cluster) members(t *testing.T, via int) map[int]int {
	t.Helper()
	st, err := c.status(via)
	noErr(t, err, "status via node %d", via)
	for _, s := range st.NodesUp {
		if c.hostIndex(s.Host) != via {
			continue
		}
		m := map[int]int{}
		for id, host := range s.Nodes {
			m[c.hostIndex(host)] = id
		}
		return m
	}
	t.Fatalf("node %d does not report itself", via)
	return nil
}

// TestRemoveAndAdd removes followers with and without deleting their
// cluster state, removes the leader, adds nodes back, and repairs a cluster
// that lost two of three nodes for good with EditCluster.
func TestRemoveAndAdd(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.form()
	const enclave = "members"
	noErr(t, c.client().CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave")
	noErr(t, c.client().CreateKey(ctxT(t, 10*time.Second), enclave, &kms.CreateKeyRequest{Name: "k"}), "create key")

	remove := func(via, i int, deleteCluster bool) {
		t.Helper()
		err := c.client(via).RemoveNode(ctxT(t, 40*time.Second), &kms.RemoveClusterNodeRequest{Host: c.nodes[i].Host, DeleteClusterOnHost: deleteCluster})
		noErr(t, err, "remove node %d (delete cluster: %v) via node %d", i, deleteCluster, via)
	}
	add := func(via, i int) {
		t.Helper()
		err := c.client(via).AddNode(ctxT(t, 40*time.Second), &kms.AddClusterNodeRequest{Host: c.nodes[i].Host})
		noErr(t, err, "add node %d via node %d", i, via)
	}

	t.Run("follower without deleting", func(t *testing.T) {
		c := c.with(t)
		l := c.lead()
		f := c.others(l)[0]
		rest := c.others(f)
		remove(rest[1], f, false) // via a node that may be a follower: forwarded
		c.waitHealthy(rest, 10*time.Second)
		if m := c.members(t, l); len(m) != 2 {
			t.Errorf("after removing node %d the leader knows %v", f, m)
		}
		// Until it is stopped, the removed node refuses to serve its
		// (now stale) state.
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := c.client(f).KeyStatus(ctxT(t, 5*time.Second), enclave, &kms.KeyStatusRequest{Name: "k"})
			if err != nil {
				t.Logf("read on the removed, still running node: %s", testnode.DescribeErr(err))
				wantStatus(t, err, http.StatusServiceUnavailable, "read on a removed node")
				wantErrText(t, err, "read on a removed node", "removed")
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("removed node %d still serves reads 5s after its removal", f)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		took, err := c.timedWrite(f, enclave, "on-removed", 10*time.Second)
		t.Logf("write on the removed, still running node: %s after %v", testnode.DescribeErr(err), took.Round(time.Millisecond))
		if err == nil {
			t.Errorf("a write on the removed node succeeded")
		}
		// Restarting the removed node fails: it is not part of its
		// cluster any more.
		c.nodes[f].Stop()
		err = c.nodes[f].Start()
		var se *testnode.StartError
		if !errors.As(err, &se) {
			t.Fatalf("restart of a removed node: %v, want it to exit with 'server not part of cluster'", err)
		}
		t.Logf("restart of the removed node: exit %d: %s", se.Code, strings.TrimSpace(se.Stderr))
		if se.Code == 0 || !strings.Contains(se.Stderr, "server not part of cluster") {
			t.Errorf("restart of a removed node: exit %d, stderr:\n%s\nwant a non-zero exit with 'server not part of cluster'", se.Code, se.Stderr)
		}
		// As the guide says: delete kms.db, start, add again.
		noErr(t, os.Remove(filepath.Join(c.nodes[f].Dir, "kms.db")), "delete kms.db")
		os.RemoveAll(filepath.Join(c.nodes[f].Dir, "snapshots"))
		c.nodes[f].MustStart()
		add(rest[0], f)
		c.waitHealthy(c.others(), 10*time.Second)
		c.wantKeys(t, f, enclave, []string{"k"})
	})

	t.Run("follower deleting its cluster", func(t *testing.T) {
		c := c.with(t)
		l := c.lead()
		f := c.others(l)[0]
		remove(l, f, true)
		c.waitHealthy(c.others(f), 10*time.Second)
		// It is a fresh one-node cluster now, without the cluster's state.
		alone := &cluster{t: t, nodes: []*testnode.Node{c.nodes[f]}, root: c.root}
		var vs map[int]view
		deadline := time.Now().Add(10 * time.Second)
		for {
			var err error
			vs, err = alone.views(0)
			if err == nil && len(vs) == 1 && vs[0].role == "Leader" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("removed node %d did not become a one-node cluster: %v, %s", f, vs, testnode.DescribeErr(err))
			}
			time.Sleep(50 * time.Millisecond)
		}
		_, err := c.client(f).KeyStatus(ctxT(t, 5*time.Second), enclave, &kms.KeyStatusRequest{Name: "k"})
		if err == nil {
			t.Errorf("node %d still serves the cluster's key after it was removed with DeleteClusterOnHost", f)
		}
		t.Logf("removed node's key status: %s", testnode.DescribeErr(err))
		// It can be added again right away.
		add(l, f)
		c.waitHealthy(c.others(), 10*time.Second)
		c.wantKeys(t, f, enclave, []string{"k"})
	})

	t.Run("leader", func(t *testing.T) {
		c := c.with(t)
		l := c.lead()
		rest := c.others(l)
		remove(rest[0], l, true)
		start := time.Now()
		nl := c.waitLeader(rest[0], rest, 10*time.Second)
		c.waitHealthy(rest, 10*time.Second)
		t.Logf("leader node %d removed; node %d leads after %v", l, nl, time.Since(start).Round(time.Millisecond))
		names, _ := createKeys(t, c.client(rest...), enclave, "without-old-leader", 3)
		add(nl, l)
		c.waitHealthy(c.others(), 10*time.Second)
		c.wantKeys(t, l, enclave, append(names, "k"))
	})

	t.Run("edit after losing two for good", func(t *testing.T) {
		c := c.with(t)
		l := c.lead()
		s := c.others(l)[0]
		lost := c.others(s)
		ids := c.members(t, s)
		for _, i := range lost {
			c.nodes[i].Kill()
		}
		took, err := c.timedWrite(s, enclave, "before-edit", 10*time.Second)
		wantStatus(t, err, http.StatusServiceUnavailable, "write on the survivor before the edit")
		t.Logf("write on the survivor before the edit: %s after %v", testnode.DescribeErr(err), took.Round(time.Millisecond))
		for _, i := range lost {
			err := c.client(s).EditCluster(ctxT(t, 20*time.Second), &kms.EditClusterRequest{Host: c.nodes[s].Addr, Remove: []int{ids[i]}})
			noErr(t, err, "edit node %d to drop node %d (ID %d)", s, i, ids[i])
		}
		c.waitHealthy([]int{s}, 10*time.Second)
		if m := c.members(t, s); len(m) != 1 {
			t.Errorf("after the edit node %d knows %v", s, m)
		}
		names, slow := createKeys(t, c.client(s), enclave, "after-edit", 3)
		t.Logf("after dropping nodes %v, node %d alone takes writes (slowest %v)", lost, s, slow.Round(time.Millisecond))
		c.wantKeys(t, s, enclave, append(names, "k"))
		// Editing a node out of its own view is refused.
		err = c.client(s).EditCluster(ctxT(t, 10*time.Second), &kms.EditClusterRequest{Host: c.nodes[s].Addr, Remove: []int{ids[s]}})
		t.Logf("edit node %d to drop itself: %s", s, testnode.DescribeErr(err))
		if err == nil {
			t.Errorf("a node dropped itself from its view of the cluster")
		}
	})
}
