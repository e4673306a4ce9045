// Package cluster_test runs Keep clusters of real keep processes on
// 127.0.0.x and breaks them: it forms clusters as the deployment guide
// does, kills nodes, cuts the network between them with a fault-injecting
// proxy, removes and re-adds nodes, restarts and restores them, and checks
// client histories for linearizability with porcupine.
//
// Logs of every node are printed when a test fails.
package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

func TestMain(m *testing.M) { os.Exit(testnode.Main(m)) }

// cluster is a set of nodes started with one HSM key. With a network, every
// node's --host is its proxy's address, so all traffic between nodes goes
// through the proxies; clients connect to the nodes directly.
type cluster struct {
	t     *testing.T
	hsm   string
	nodes []*testnode.Node
	net   *network // nil unless proxied
	root  mtls.PrivateKey
	// failHTTP is each node's gofail endpoint (GOFAIL_HTTP) if the nodes
	// run keep built with failpoints.
	failHTTP []string
}

type clusterOpts struct {
	hsm     string         // HSM key; default a fresh one
	proxied bool           // put a proxy in front of every node for peer traffic
	config  string         // YAML config for every node, if set
	binary  string         // the keep binary of the first start; default the one under test
	dirs    map[int]string // data directory of a node, if not a new temporary one
	// failpoints runs keep built with failpoints, each node with a gofail
	// endpoint to arm them (see failpoint_test.go).
	failpoints bool
}

// newCluster starts n fresh nodes that share an HSM key, each a one-node
// cluster, concurrently. It does not join them: see form.
func newCluster(t *testing.T, n int, opts clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, hsm: opts.hsm}
	if c.hsm == "" {
		c.hsm = testnode.NewHSMKey(t)
	}
	if opts.proxied {
		c.net = newNetwork(t)
	}
	var config string
	if opts.config != "" {
		config = filepath.Join(t.TempDir(), "keep.yaml")
		if err := os.WriteFile(config, []byte(opts.config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		addr := testnode.AllocAddr(t)
		host := addr
		if c.net != nil {
			host = c.net.addProxy(t, i, addr)
		}
		o := testnode.Options{
			Name:   fmt.Sprintf("n%d", i),
			Addr:   addr,
			Host:   host,
			HSMKey: c.hsm,
			Config: config,
			Dir:    opts.dirs[i],
		}
		if opts.failpoints {
			fp := testnode.AllocAddr(t)
			c.failHTTP = append(c.failHTTP, fp)
			o.Binary = testnode.FailpointBinary(t)
			o.ExtraEnv = []string{"GOFAIL_HTTP=" + fp}
		}
		c.nodes = append(c.nodes, testnode.New(t, o))
	}
	if opts.binary != "" {
		for _, nd := range c.nodes {
			nd.Binary = opts.binary
		}
	}
	c.startAll(allIdx(n)...)
	if opts.binary != "" {
		for _, nd := range c.nodes {
			nd.Binary = "" // later starts run the one under test
		}
	}
	c.root = c.nodes[0].Root
	for i, nd := range c.nodes {
		if nd.APIKey != c.nodes[0].APIKey {
			t.Fatalf("node %d prints root API key %s, node 0 %s: one HSM key must give one root key", i, nd.APIKey, c.nodes[0].APIKey)
		}
	}
	return c
}

func allIdx(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// startAll starts the given nodes concurrently and waits until all are up.
func (c *cluster) startAll(idx ...int) {
	c.t.Helper()
	errs := make([]error, len(idx))
	var wg sync.WaitGroup
	for j, i := range idx {
		wg.Go(func() { errs[j] = c.nodes[i].Start() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatal(err)
	}
}

// form adds every other node to node 0, one after the other, and waits
// until the cluster is healthy.
func (c *cluster) form() {
	c.t.Helper()
	cl := c.client(0)
	for i := 1; i < len(c.nodes); i++ {
		if err := cl.AddNode(ctxT(c.t, 60*time.Second), &kms.AddClusterNodeRequest{Host: c.nodes[i].Host}); err != nil {
			c.t.Fatalf("add node %d (%s) via node 0: %s", i, c.nodes[i].Host, testnode.DescribeErr(err))
		}
	}
	c.waitHealthy(allIdx(len(c.nodes)), 20*time.Second)
}

// client returns a root client for the given nodes, all of them if none.
func (c *cluster) client(idx ...int) *kms.Client {
	return c.clientKey(c.root, idx...)
}

func (c *cluster) clientKey(key mtls.PrivateKey, idx ...int) *kms.Client {
	if len(idx) == 0 {
		idx = allIdx(len(c.nodes))
	}
	var eps []string
	for _, i := range idx {
		eps = append(eps, c.nodes[i].Addr)
	}
	return testnode.Client(c.t, key, eps...)
}

// hostIndex maps a --host (as the cluster knows nodes) to the node index.
func (c *cluster) hostIndex(host string) int {
	for i, n := range c.nodes {
		if n.Host == host {
			return i
		}
	}
	return -1
}

// status asks node i for the cluster status.
func (c *cluster) status(i int) (*kms.ClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.client(i).ClusterStatus(ctx, &kms.ClusterStatusRequest{})
}

// view is one node's status summary.
type view struct {
	role   string
	leader int // node index of the leader, -1 if none
	commit uint64
	uptime time.Duration
}

// views asks node via for the cluster status and summarizes it per node
// index; nodes reported down are missing.
func (c *cluster) views(via int) (map[int]view, error) {
	st, err := c.status(via)
	if err != nil {
		return nil, err
	}
	out := map[int]view{}
	for id, s := range st.NodesUp {
		i := c.hostIndex(s.Host)
		if i < 0 {
			return nil, fmt.Errorf("node %d reports unknown host %s", id, s.Host)
		}
		v := view{role: s.Role, leader: -1, commit: s.Commit, uptime: s.UpTime}
		if h, ok := s.Nodes[s.LeaderID]; ok && s.LeaderID >= 0 {
			v.leader = c.hostIndex(h)
		}
		out[i] = v
	}
	return out, nil
}

// waitHealthy waits until node idx[0] reports exactly the nodes idx up,
// one of them Leader and the others following it and caught up with it:
// each with the leader's commit, or at least with the commit the leader
// had at the poll before (100 ms earlier). Under a running load the
// leader's commit moves on between any two reports, so a moment at which
// every node has exactly the leader's commit may not come.
func (c *cluster) waitHealthy(idx []int, timeout time.Duration) map[int]view {
	c.t.Helper()
	var (
		last     string
		caughtUp uint64 // the leader's commit at the poll before; 0 for none
	)
	deadline := time.Now().Add(timeout)
	for {
		vs, err := c.views(idx[0])
		if err != nil {
			last, caughtUp = testnode.DescribeErr(err), 0
		} else if msg, leaderCommit := healthyAfter(vs, idx, caughtUp); msg != "" {
			last, caughtUp = msg, leaderCommit
		} else {
			return vs
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster of nodes %v not healthy within %v: %s", idx, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// healthy says why vs, reported by one node, is not a healthy cluster of
// exactly the nodes idx, every node with the leader's commit; "" if it is.
func healthy(vs map[int]view, idx []int) string {
	msg, _ := healthyAfter(vs, idx, 0)
	return msg
}

// healthyAfter is healthy where a node is also caught up once its commit
// reaches caughtUp, a commit the leader had earlier (0: none). It returns
// the leader's commit as well, 0 if there is no single leader.
func healthyAfter(vs map[int]view, idx []int, caughtUp uint64) (string, uint64) {
	if len(vs) != len(idx) {
		return fmt.Sprintf("%d nodes up, want %d: %v", len(vs), len(idx), vs), 0
	}
	leader := -1
	for _, i := range idx {
		v, ok := vs[i]
		if !ok {
			return fmt.Sprintf("node %d not up: %v", i, vs), 0
		}
		if v.role == "Leader" {
			if leader >= 0 {
				return fmt.Sprintf("two leaders: %v", vs), 0
			}
			leader = i
		}
	}
	if leader < 0 {
		return fmt.Sprintf("no leader: %v", vs), 0
	}
	lc := vs[leader].commit
	for _, i := range idx {
		v := vs[i]
		if v.leader != leader {
			return fmt.Sprintf("node %d follows %d, leader is %d: %v", i, v.leader, leader, vs), lc
		}
		if v.commit != lc && (caughtUp == 0 || v.commit < caughtUp) {
			return fmt.Sprintf("commits differ: %v", vs), lc
		}
	}
	return "", lc
}

// leader returns the index of the node that node via names as leader, -1
// if none.
func (c *cluster) leader(via int) int {
	vs, err := c.views(via)
	if err != nil {
		return -1
	}
	if v, ok := vs[via]; ok {
		return v.leader
	}
	return -1
}

// lead waits (10 s at most) until a running node follows a leader and
// returns the leader's index.
func (c *cluster) lead() int {
	c.t.Helper()
	var running []int
	for i, n := range c.nodes {
		if n.Running() {
			running = append(running, i)
		}
	}
	if len(running) == 0 {
		c.t.Fatal("no node is running")
	}
	return c.waitLeader(running[0], running, 10*time.Second)
}

// with returns c for a subtest: failures go to t.
func (c *cluster) with(t *testing.T) *cluster {
	cc := *c
	cc.t = t
	return &cc
}

// waitLeader waits until node via follows a leader among candidates and
// returns it.
func (c *cluster) waitLeader(via int, candidates []int, timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l := c.leader(via); l >= 0 && slices.Contains(candidates, l) {
			return l
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d has no leader among %v within %v", via, candidates, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctxT returns a context that ends after d or with the test.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ctxD returns a context that ends after d, and its cancel function.
func ctxD(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func noErr(t testing.TB, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %s", fmt.Sprintf(format, args...), testnode.DescribeErr(err))
	}
}

// wantStatus fails the test unless err is a kms.Error with status.
func wantStatus(t testing.TB, err error, status int, format string, args ...any) {
	t.Helper()
	if testnode.StatusOf(err) != status {
		t.Errorf("%s: got %s, want HTTP %d", fmt.Sprintf(format, args...), testnode.DescribeErr(err), status)
	}
}

// wantErrText fails the test unless err's text contains every part.
func wantErrText(t testing.TB, err error, what string, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one containing %q", what, parts)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %s does not contain %q", what, testnode.DescribeErr(err), p)
		}
	}
}

// keyExists asks node i whether key name exists in enclave.
func keyExists(ctx context.Context, cl *kms.Client, enclave, name string) (bool, error) {
	_, err := cl.KeyStatus(ctx, enclave, &kms.KeyStatusRequest{Name: name})
	if err == nil {
		return true, nil
	}
	if errors.Is(err, kms.ErrKeyNotFound) {
		return false, nil
	}
	return false, err
}
