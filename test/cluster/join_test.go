package cluster_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// TestJoinFailures tries to add nodes that cannot join and checks that each
// case fails with its own clear error, and that the cluster and the
// rejected nodes are unharmed.
func TestJoinFailures(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{})
	c.form()
	cl := c.client(0)
	add := func(host string) error {
		return cl.AddNode(ctxT(t, 40*time.Second), &kms.AddClusterNodeRequest{Host: host})
	}

	t.Run("not running", func(t *testing.T) {
		host := testnode.AllocAddr(t) // nothing listens there
		err := add(host)
		t.Logf("AddNode %s: %s", host, testnode.DescribeErr(err))
		wantStatus(t, err, 502, "add a node that is not running")
		wantErrText(t, err, "add a node that is not running", host, "not reachable")
	})

	t.Run("other HSM key", func(t *testing.T) {
		other := testnode.Start(t, testnode.Options{Name: "other-hsm"})
		err := add(other.Host)
		t.Logf("AddNode %s: %s", other.Host, testnode.DescribeErr(err))
		wantStatus(t, err, 502, "add a node with another HSM key")
		wantErrText(t, err, "add a node with another HSM key", other.Host, "HSM key")
		vs, err := (&cluster{t: t, nodes: []*testnode.Node{other}, root: other.Root}).views(0)
		noErr(t, err, "status of the rejected node")
		if len(vs) != 1 || vs[0].role != "Leader" {
			t.Errorf("rejected node is no longer a one-node cluster: %v", vs)
		}
	})

	t.Run("not fresh", func(t *testing.T) {
		c := c.with(t)
		used := testnode.Start(t, testnode.Options{Name: "used", HSMKey: c.hsm})
		noErr(t, used.RootClient(t).CreateKey(ctxT(t, 10*time.Second), "", &kms.CreateKeyRequest{Name: "mine"}), "create a key on the standalone node")
		err := add(used.Host)
		t.Logf("AddNode %s: %s", used.Host, testnode.DescribeErr(err))
		wantStatus(t, err, 409, "add a node that holds a key")
		wantErrText(t, err, "add a node that holds a key", "node is not fresh", used.Host)
		// Its key is still there, and it is still its own cluster.
		_, err = used.RootClient(t).KeyStatus(ctxT(t, 10*time.Second), "", &kms.KeyStatusRequest{Name: "mine"})
		noErr(t, err, "the rejected node's key")
	})

	t.Run("already a member", func(t *testing.T) {
		c := c.with(t)
		for i, n := range c.nodes {
			err := add(n.Host)
			t.Logf("AddNode %s: %s", n.Host, testnode.DescribeErr(err))
			wantStatus(t, err, 409, "add node %d again", i)
			wantErrText(t, err, "add a member again", "already part of the cluster")
		}
	})

	t.Run("wrong host on restart", func(t *testing.T) {
		c := c.with(t)
		n := c.nodes[1]
		n.Stop()
		good := n.Host
		n.Host = testnode.FreePort(t, n.IP()) // another --host on the same IP
		err := n.Start()
		var se *testnode.StartError
		if !errors.As(err, &se) {
			t.Fatalf("start with --host %s: %v, want the process to exit", n.Host, err)
		}
		t.Logf("exit %d, stderr: %s", se.Code, strings.TrimSpace(se.Stderr))
		if se.Code == 0 {
			t.Errorf("start with a wrong --host exited with code 0")
		}
		for _, want := range []string{"server not part of cluster", n.Host, good} {
			if !strings.Contains(se.Stderr, want) {
				t.Errorf("start with a wrong --host: stderr does not name %q:\n%s", want, se.Stderr)
			}
		}
		// With the right --host it is a member again.
		n.Host = good
		n.MustStart()
		c.waitHealthy([]int{0, 1}, 10*time.Second)
	})

	// The cluster took every rejection without harm: it takes writes.
	noErr(t, c.client().CreateKey(ctxT(t, 10*time.Second), "", &kms.CreateKeyRequest{Name: "after"}), "write after the failed joins")
	c.waitHealthy([]int{0, 1}, 5*time.Second)
}
