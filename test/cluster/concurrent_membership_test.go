package cluster_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// formOf adds nodes idx[1:] to node idx[0], one after the other.
func (c *cluster) formOf(idx ...int) {
	c.t.Helper()
	for _, i := range idx[1:] {
		err := c.client(idx[0]).AddNode(ctxT(c.t, 60*time.Second), &kms.AddClusterNodeRequest{Host: c.nodes[i].Host})
		noErr(c.t, err, "add node %d via node %d", i, idx[0])
	}
	c.waitHealthy(idx, 20*time.Second)
}

// concurrently runs each of fs in its own goroutine and returns their
// errors, in order.
func concurrently(fs ...func() error) []error {
	errs := make([]error, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Go(func() { errs[i] = f() })
	}
	wg.Wait()
	return errs
}

// TestConcurrentAdds adds two fresh nodes to a 3-node cluster at once,
// through two different nodes: both become members, with IDs of their own
// (two adds that picked one ID made raft take the second for a change of
// the first node's address, and drop it).
func TestConcurrentAdds(t *testing.T) {
	c := newCluster(t, 5, clusterOpts{})
	c.formOf(0, 1, 2)
	add := func(via, i int) func() error {
		return func() error {
			return c.client(via).AddNode(ctxT(t, 90*time.Second), &kms.AddClusterNodeRequest{Host: c.nodes[i].Host})
		}
	}
	errs := concurrently(add(1, 3), add(2, 4))
	for i, err := range errs {
		noErr(t, err, "add node %d", 3+i)
	}
	c.waitHealthy(allIdx(5), 30*time.Second)
	m := c.members(t, c.lead())
	ids := map[int]int{}
	for i, id := range m {
		if j, dup := ids[id]; dup {
			t.Errorf("nodes %d and %d have the same ID %d", i, j, id)
		}
		ids[id] = i
	}
	if len(m) != 5 {
		t.Errorf("the cluster has the members %v (node index → ID), want 5", m)
	}
	t.Logf("members (node index → ID): %v", m)
	names, _ := createKeys(t, c.client(), "", "after-adds", 3)
	for i := range 5 {
		c.wantKeys(t, i, "", names)
	}
}

// loader creates keys through the given nodes until stopped, and
// remembers those the cluster acknowledged. The keys are in an enclave a
// fresh node does not have: one that is not (or no longer) a member cannot
// acknowledge them.
type loader struct {
	stopped atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	acked   []string
	ackedAt map[string]time.Time // for the log of a lost write
	failed  map[string]int       // error → how often
}

func startLoader(c *cluster, nodes []int, enclave string, workers int) *loader {
	l := &loader{failed: map[string]int{}, ackedAt: map[string]time.Time{}}
	cl := c.client(nodes...)
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; !l.stopped.Load(); i++ {
				name := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := ctxD(10 * time.Second)
				err := cl.CreateKey(ctx, enclave, &kms.CreateKeyRequest{Name: name})
				cancel()
				l.mu.Lock()
				if err == nil {
					l.acked = append(l.acked, name)
					l.ackedAt[name] = time.Now()
				} else {
					l.failed[testnode.DescribeErr(err)]++
				}
				l.mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	return l
}

// stop ends the load, logs the failed writes and returns the names of the
// acknowledged keys.
func (l *loader) stop(t *testing.T) []string {
	l.stopped.Store(true)
	l.wg.Wait()
	for err, n := range l.failed {
		t.Logf("%d writes failed: %s", n, err)
	}
	return l.acked
}

// TestMembershipUnderLoad adds and removes nodes, at once and one after
// the other, the leader too, while clients create keys through every
// node: every acknowledged key is on every member at the end.
func TestMembershipUnderLoad(t *testing.T) {
	c := newCluster(t, 4, clusterOpts{})
	c.formOf(0, 1, 2)
	const enclave = "load"
	noErr(t, c.client(0).CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave")
	load := startLoader(c, []int{0, 1, 2}, enclave, 4)
	time.Sleep(500 * time.Millisecond)

	// Add node 3 and remove a follower (which starts over as a fresh
	// node) at once, through different nodes. The add goes through the
	// other follower: the removed one, once reset, has no leader to
	// forward it to (503), whichever change the leader makes first.
	l := c.lead()
	f := c.others(l, 3)[0]
	g := c.others(l, f, 3)[0]
	errs := concurrently(
		func() error {
			return c.client(g).AddNode(ctxT(t, 90*time.Second), &kms.AddClusterNodeRequest{Host: c.nodes[3].Host})
		},
		func() error {
			return c.client(l).RemoveNode(ctxT(t, 90*time.Second), &kms.RemoveClusterNodeRequest{Host: c.nodes[f].Host, DeleteClusterOnHost: true})
		})
	noErr(t, errs[0], "add node 3 via node %d", g)
	noErr(t, errs[1], "remove node %d via node %d", f, l)
	members := c.others(f)
	c.waitHealthy(members, 30*time.Second)

	// Add the removed node back, then remove the leader.
	time.Sleep(300 * time.Millisecond)
	noErr(t, c.client(members[0]).AddNode(ctxT(t, 90*time.Second), &kms.AddClusterNodeRequest{Host: c.nodes[f].Host}), "add node %d back", f)
	c.waitHealthy(allIdx(4), 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	l = c.lead()
	noErr(t, c.client(c.others(l)[0]).RemoveNode(ctxT(t, 90*time.Second), &kms.RemoveClusterNodeRequest{Host: c.nodes[l].Host, DeleteClusterOnHost: true}), "remove the leader, node %d", l)
	members = c.others(l)
	c.waitHealthy(members, 30*time.Second)
	time.Sleep(300 * time.Millisecond)

	// The removed leader started over as a fresh one-node cluster, with
	// nothing of the cluster it left.
	alone := &cluster{t: t, nodes: []*testnode.Node{c.nodes[l]}, root: c.root}
	alone.waitHealthy([]int{0}, 10*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		// Not the enclave of the load, which goes on through this node.
		err := alone.client().CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: "alone"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create an enclave on the removed leader, a fresh cluster: %s", testnode.DescribeErr(err))
		}
	}

	acked := load.stop(t)
	t.Logf("%d keys acknowledged; members (node index → ID) %v", len(acked), c.members(t, members[0]))
	if len(acked) < 20 {
		t.Errorf("only %d writes were acknowledged: the load did not run", len(acked))
	}
	c.waitHealthy(members, 10*time.Second)
	for _, i := range members {
		c.wantKeys(t, i, enclave, acked)
	}
	if t.Failed() {
		for _, k := range acked {
			if ok, _ := keyExists(ctxT(t, 5*time.Second), c.client(members[0]), enclave, k); !ok {
				t.Logf("%s was acknowledged at %s", k, load.ackedAt[k].UTC().Format("15:04:05.000"))
			}
		}
	}
}
