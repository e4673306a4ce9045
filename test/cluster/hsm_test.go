package cluster_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/minio/kms-go/kms"
	"go.etcd.io/bbolt"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/test/testnode"
)

// hsmKind makes HSMs of one kind, named name, for a test of several HSMs:
// the cluster starts on the soft HSM key of MINIO_KMS_HSM_KEY and moves to
// an HSM of each kind.
type hsmKind struct {
	name string
	new  func(t *testing.T, name string) testnode.HSM
}

// hsmKinds are the kinds of "the second HSM": another soft HSM key, and a
// key on a SoftHSM2 token.
var hsmKinds = []hsmKind{
	{"soft", func(t *testing.T, name string) testnode.HSM {
		return testnode.SoftHSM(t, name, envName("KEEP_TEST_HSM_", name))
	}},
	{"softhsm2", func(t *testing.T, name string) testnode.HSM {
		return testnode.SoftHSM2(t, name, envName("KEEP_TEST_PIN_", name))
	}},
}

// envName is prefix + name as an environment variable's name.
func envName(prefix, name string) string {
	return prefix + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, name)
}

// legacyHSM is the HSM a cluster starts on: a soft HSM key in
// MINIO_KMS_HSM_KEY, which nodes without an hsm: section read, named
// hsm:aes256 as clusters created before several HSMs.
func legacyHSM(t *testing.T) testnode.HSM {
	return testnode.SoftHSM(t, "", "MINIO_KMS_HSM_KEY")
}

// hsmCluster is a cluster whose nodes take their HSMs from config files
// the test rewrites between restarts, each node auditing to a file of its
// own.
type hsmCluster struct {
	*cluster
	configs []string
	audits  []string
}

// newHSMCluster starts n nodes on the environment's HSM h (no hsm:
// section) and forms them into a cluster.
func newHSMCluster(t *testing.T, n int, h testnode.HSM) *hsmCluster {
	t.Helper()
	c := &hsmCluster{cluster: &cluster{t: t}}
	dir := t.TempDir()
	for i := range n {
		c.configs = append(c.configs, filepath.Join(dir, fmt.Sprintf("keep-%d.yaml", i)))
		c.audits = append(c.audits, filepath.Join(dir, fmt.Sprintf("audit-%d.log", i)))
		c.nodes = append(c.nodes, testnode.New(t, testnode.Options{
			Name:   fmt.Sprintf("n%d", i),
			HSMKey: "-",
			Config: c.configs[i],
		}))
		c.configure(i, h, false)
	}
	c.startAll(allIdx(n)...)
	c.root = h.RootAPIKey(t)
	for i, nd := range c.nodes {
		if nd.APIKey != c.root.String() {
			t.Fatalf("node %d prints the root API key %s, want %s: the one HSM's", i, nd.APIKey, c.root)
		}
		// Later starts print no key: the test knows each HSM's.
		nd.NoAPIKey = true
	}
	c.form()
	return c
}

// configure writes node i's config file: its HSMs first, more… under hsm:
// or, when listed is false, no hsm: section and first's environment. Nodes
// log at debug level, so that TestHSMSecretsAtRest searches the most that
// a node can log.
func (c *hsmCluster) configure(i int, first testnode.HSM, listed bool, more ...testnode.HSM) {
	conf := "version: v1\nlog:\n  level: debug\naudit:\n  sink: " + c.audits[i] + "\n"
	env := first.Env
	if listed {
		var section string
		section, env = testnode.HSMConfig(append([]testnode.HSM{first}, more...)...)
		conf += section
	}
	if err := os.WriteFile(c.configs[i], []byte(conf), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i].ExtraEnv = env
}

// restartOn restarts node i with the HSMs hsms, in order, and waits until
// the cluster is healthy.
func (c *hsmCluster) restartOn(i int, hsms ...testnode.HSM) {
	c.t.Helper()
	c.nodes[i].Stop()
	c.configure(i, hsms[0], true, hsms[1:]...)
	noErr(c.t, c.nodes[i].Start(), "start node %d on %v", i, names(hsms))
	c.waitHealthy(allIdx(len(c.nodes)), 30*time.Second)
	c.spaceRestarts()
}

// moveSpaced makes TestMoveHSM follow docs/hsm.md to the letter: 31 s
// between two restarts, which is how long kms-go's balancer avoids a node
// that failed it, and a load through that balanced client alone, with no
// fallback to single nodes. About 13 minutes; not part of CI.
var moveSpaced = flag.Bool("move.spaced", false, "TestMoveHSM leaves 31 s between restarts and its load uses kms-go's balanced client alone")

// spaceRestarts waits, under -move.spaced, as long as kms-go avoids a
// node that failed it, so that no client finds every node avoided.
func (c *hsmCluster) spaceRestarts() {
	if *moveSpaced {
		time.Sleep(31 * time.Second)
	}
}

func names(hsms []testnode.HSM) []string {
	var n []string
	for _, h := range hsms {
		n = append(n, h.Name)
	}
	return n
}

// wantHSMs waits (10 s at most) until node i's /v1/health/status says it
// unsealed with unsealed, that the cluster's seals are those of sealed (in
// any order) and that the node is configured with configured (in order).
func (c *hsmCluster) wantHSMs(i int, unsealed string, sealed, configured []string) {
	c.t.Helper()
	want := testnode.HSMStatus{UnsealedWith: unsealed, Sealed: slices.Sorted(slices.Values(sealed)), Configured: configured}
	var last string
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := testnode.GetHSMStatus(c.t, c.root, c.nodes[i].Addr)
		if err == nil {
			slices.Sort(st.Sealed)
			if st.String() == want.String() {
				return
			}
			last = st.String()
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d: /v1/health/status: %s, want %s", i, last, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// addHSM sends CLUSTER:ADDHSM for h to node i.
func (c *hsmCluster) addHSM(i int, h testnode.HSM, overwrite bool) error {
	return testnode.AddHSM(ctxT(c.t, 30*time.Second), c.t, c.root, c.nodes[i].Addr, h.Name, overwrite)
}

// removeHSM sends CLUSTER:REMOVEHSM for h to node i.
func (c *hsmCluster) removeHSM(i int, h testnode.HSM) error {
	return testnode.RemoveHSM(ctxT(c.t, 30*time.Second), c.t, c.root, c.nodes[i].Addr, h.Name)
}

// move moves every node from HSM from to HSM to, as an operator does: each
// node restarted with [from, to]; to added; each node restarted with [to];
// from removed, which is refused while a node uses it or does not answer.
// Afterwards to's root API key is the cluster's root, from's is refused.
func (c *hsmCluster) move(from, to testnode.HSM) {
	t := c.t
	t.Helper()
	all := []string{from.Name}
	// Only a node configured with an HSM can seal with it.
	err := c.addHSM(0, to, false)
	wantStatus(t, err, 404, "ADDHSM %s to a node without it", to.Name)
	wantErrText(t, err, "ADDHSM to a node without it", to.Name, from.Name)
	for i := range c.nodes {
		c.restartOn(i, from, to)
		c.wantHSMs(i, from.Name, all, []string{from.Name, to.Name})
	}
	noErr(t, c.addHSM(0, to, false), "ADDHSM %s", to.Name)
	err = c.addHSM(1, to, false)
	wantStatus(t, err, 409, "ADDHSM %s again", to.Name)
	wantErrText(t, err, "ADDHSM again", to.Name)
	noErr(t, c.addHSM(2%len(c.nodes), to, true), "ADDHSM %s again with overwrite", to.Name)
	for i := range c.nodes {
		c.wantHSMs(i, from.Name, []string{from.Name, to.Name}, []string{from.Name, to.Name})
	}

	last := len(c.nodes) - 1
	for i := range c.nodes {
		if i == last {
			// Removing from while a node is down is refused: it may use it.
			c.nodes[i].Stop()
			err := c.removeHSM(0, from)
			wantStatus(t, err, 409, "REMOVEHSM %s while node %d is down", from.Name, i)
			wantErrText(t, err, "REMOVEHSM while a node is down", c.nodes[i].Host)
			c.configure(i, to, true)
			noErr(t, c.nodes[i].Start(), "start node %d on %s", i, to.Name)
			c.waitHealthy(allIdx(len(c.nodes)), 30*time.Second)
			c.spaceRestarts()
		} else {
			c.restartOn(i, to)
		}
		c.wantHSMs(i, to.Name, []string{from.Name, to.Name}, []string{to.Name})
		if i < last {
			err := c.removeHSM(i, from)
			wantStatus(t, err, 409, "REMOVEHSM %s while node %d uses it", from.Name, last)
			wantErrText(t, err, "REMOVEHSM while a node uses it", from.Name, "in use")
		}
	}
	noErr(t, c.removeHSM(0, from), "REMOVEHSM %s", from.Name)
	// The root API key of the removed HSM is no one's now.
	old := c.root
	c.root = to.RootAPIKey(t)
	for i := range c.nodes {
		c.wantHSMs(i, to.Name, []string{to.Name}, []string{to.Name})
	}
	err = c.removeHSM(1%len(c.nodes), from)
	wantStatus(t, err, 404, "REMOVEHSM %s again", from.Name)
	err = c.removeHSM(0, to)
	wantStatus(t, err, 409, "REMOVEHSM of the last HSM %s", to.Name)

	for i := range c.nodes {
		_, err := c.clientKey(old, i).ClusterStatus(ctxT(t, 10*time.Second), &kms.ClusterStatusRequest{})
		wantStatus(t, err, 403, "cluster status on node %d with the root API key of removed HSM %s", i, from.Name)
		_, err = c.clientKey(c.root, i).ClusterStatus(ctxT(t, 10*time.Second), &kms.ClusterStatusRequest{})
		noErr(t, err, "cluster status on node %d with the root API key of HSM %s", i, to.Name)
	}
}

// hsmLoad generates and decrypts through a kms-go client of every node,
// as MinIO does, and keeps every data key it made.
//
// kms-go retries a request that finds a server down (connection refused)
// on the other servers, but skips those that failed in the last 30
// seconds: in a rolling restart faster than that, the client gives up
// while servers are up. The load retries such a request on each node
// itself, as kms-go would without that memory, and counts it as a
// failover; every answer a server gives (such as a 503) is an error.
type hsmLoad struct {
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	ops       atomic.Int64
	failovers atomic.Int64
	// resentEmpty counts the requests that kms-go's balancer resent
	// without their body (see failover).
	resentEmpty atomic.Int64
	mu          sync.Mutex
	deks        []*kms.GenerateKeyResponse
	errs        []string
	done        bool
}

// startLoad starts the load through all (a client of every node) and, on
// a connection error, through nodes (a client of each); if the test ends
// before stop, the load's failures are reported then.
func startLoad(t *testing.T, all *kms.Client, nodes []*kms.Client, enclave, key string) *hsmLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &hsmLoad{cancel: cancel}
	t.Cleanup(func() {
		if !l.done {
			l.stop(t)
		}
	})
	for range 2 {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				err := l.round(ctx, all, nodes, enclave, key)
				if ctx.Err() != nil {
					return
				}
				l.ops.Add(1)
				if err != nil {
					l.mu.Lock()
					l.errs = append(l.errs, fmt.Sprintf("%s: %s", time.Now().Format("15:04:05.000"), err))
					l.mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return l
}

// round generates a data key, decrypts it and one made earlier.
func (l *hsmLoad) round(ctx context.Context, all *kms.Client, nodes []*kms.Client, enclave, key string) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var dek *kms.GenerateKeyResponse
	err := l.failover(all, nodes, func(cl *kms.Client) error {
		deks, err := cl.GenerateKey(rctx, enclave, &kms.GenerateKeyRequest{Name: key, Length: 32})
		if err == nil {
			dek = deks[0]
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("generate: %s", testnode.DescribeErr(err))
	}
	l.mu.Lock()
	l.deks = append(l.deks, dek)
	old := l.deks[rand.IntN(len(l.deks))]
	l.mu.Unlock()
	for _, d := range []*kms.GenerateKeyResponse{dek, old} {
		err := l.failover(all, nodes, func(cl *kms.Client) error {
			pt, err := cl.Decrypt(rctx, enclave, &kms.DecryptRequest{Name: key, Ciphertext: d.Ciphertext})
			if err == nil && !bytes.Equal(pt[0].Plaintext, d.Plaintext) {
				return errors.New("another plaintext")
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("decrypt: %s", testnode.DescribeErr(err))
		}
	}
	return nil
}

// failover runs op on all and, if no server answered, on each node until
// one does. A request that kms-go's balancer resent without its body
// (testnode.ResentEmpty) was not answered either: the server says it got
// none of it; it is sent again through all first. The per-node clients
// have one host each, so their balancer never resends.
func (l *hsmLoad) failover(all *kms.Client, nodes []*kms.Client, op func(*kms.Client) error) error {
	err := op(all)
	if testnode.ResentEmpty(err) {
		// The server got none of the body: the request was not served,
		// and a caller may send it again.
		l.resentEmpty.Add(1)
		err = op(all)
	}
	for _, cl := range nodes {
		var answer kms.Error
		if err == nil || (errors.As(err, &answer) && !testnode.ResentEmpty(err)) {
			return err
		}
		l.failovers.Add(1)
		err = op(cl)
	}
	return err
}

// stop ends the load, fails the test for every error, and returns the
// data keys made.
func (l *hsmLoad) stop(t *testing.T) []*kms.GenerateKeyResponse {
	t.Helper()
	l.done = true
	l.cancel()
	l.wg.Wait()
	t.Logf("load: %d rounds (generate, decrypt it and an older one), %d data keys, %d requests resent empty by kms-go and sent again, %d requests failed over to another node, %d rounds failed",
		l.ops.Load(), len(l.deks), l.resentEmpty.Load(), l.failovers.Load(), len(l.errs))
	// The same failure repeats while a node is in the state that causes
	// it: one line per kind, with its count, first and last time.
	type kind struct {
		n           int
		first, last string
	}
	kinds := map[string]*kind{}
	var order []string
	for _, e := range l.errs {
		at, what, _ := strings.Cut(e, ": ")
		k, ok := kinds[what]
		if !ok {
			k = &kind{first: at}
			kinds[what] = k
			order = append(order, what)
		}
		k.n++
		k.last = at
	}
	for _, what := range order {
		k := kinds[what]
		t.Errorf("load: %d× from %s to %s: %s", k.n, k.first, k.last, what)
	}
	return l.deks
}

// wantRefusedHSM starts node n, which must refuse (testnode.StartRefused)
// in a line that names every HSM in names.
func wantRefusedHSM(t *testing.T, n *testnode.Node, names ...string) {
	t.Helper()
	line := n.StartRefused(t, nil)
	for _, name := range names {
		if !strings.Contains(line, name) {
			t.Errorf("node %s: its error does not name HSM %s: %s", n.Name, name, line)
		}
	}
}

// TestMoveHSM moves a 3-node cluster from the soft HSM key to a second HSM
// and back, node by node, while a client of all three nodes generates and
// decrypts: not one request fails, and every data key made at any point
// decrypts on every node afterwards. The nodes restart faster than the
// 30 s that kms-go's balancer avoids a node that failed it, so its client
// of all three can find them all avoided: the load then tries each node
// in turn, as a caller would. With -move.spaced it follows docs/hsm.md
// instead, and the balanced client must get every answer alone.
func TestMoveHSM(t *testing.T) {
	for _, kind := range hsmKinds {
		t.Run(kind.name, func(t *testing.T) {
			a, b := legacyHSM(t), kind.new(t, "hsm-b")
			c := newHSMCluster(t, 3, a)
			for i := range c.nodes {
				c.wantHSMs(i, a.Name, []string{a.Name}, []string{a.Name})
			}

			// The load runs as an enclave admin: each HSM's root API
			// key is SysAdmin only while that HSM seals the root key.
			const enclave, key = "move", "k"
			admin := testnode.NewAPIKey(t)
			root := c.client()
			noErr(t, root.CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave")
			noErr(t, root.CreateKey(ctxT(t, 10*time.Second), enclave, &kms.CreateKeyRequest{Name: key}), "create key")
			noErr(t, root.CreateIdentity(ctxT(t, 10*time.Second), enclave, &kms.CreateIdentityRequest{Identity: admin.Identity(), Privilege: kms.Admin}), "create admin")
			var perNode []*kms.Client // none under -move.spaced: no fallback
			for i := range c.nodes {
				if !*moveSpaced {
					perNode = append(perNode, c.clientKey(admin, i))
				}
			}
			load := startLoad(t, c.clientKey(admin), perNode, enclave, key)

			start := time.Now()
			c.move(a, b)
			t.Logf("moved from %s to %s in %v", a.Name, b.Name, time.Since(start).Round(time.Millisecond))

			// A node that has only the removed HSM cannot start, and says
			// which HSMs the cluster and the node have.
			n := c.nodes[2]
			n.Stop()
			c.configure(2, a, true)
			wantRefusedHSM(t, n, a.Name, b.Name)
			c.configure(2, b, true)
			noErr(t, n.Start(), "start node 2 on %s again", b.Name)
			c.waitHealthy(allIdx(3), 30*time.Second)
			c.spaceRestarts()

			start = time.Now()
			c.move(b, a)
			t.Logf("moved back from %s to %s in %v", b.Name, a.Name, time.Since(start).Round(time.Millisecond))
			deks := load.stop(t)
			if len(deks) == 0 {
				t.Fatal("the load made no data key")
			}
			for i := range c.nodes {
				cl := c.clientKey(admin, i)
				for j, d := range deks {
					pt, err := cl.Decrypt(ctxT(t, 10*time.Second), enclave, &kms.DecryptRequest{Name: key, Ciphertext: d.Ciphertext})
					if err != nil || !bytes.Equal(pt[0].Plaintext, d.Plaintext) {
						t.Fatalf("node %d: data key %d of %d does not decrypt: %s", i, j, len(deks), testnode.DescribeErr(err))
					}
				}
			}
		})
	}
}

// TestHSMJoin adds fresh nodes to a cluster created on the soft HSM key
// that the second HSM seals too: a node on the second HSM only joins,
// though the init entry it replays was sealed by the first alone; a node
// on an HSM without a seal is refused.
func TestHSMJoin(t *testing.T) {
	for _, kind := range hsmKinds {
		t.Run(kind.name, func(t *testing.T) {
			a, b := legacyHSM(t), kind.new(t, "hsm-b")
			c := newHSMCluster(t, 2, a)
			noErr(t, c.client().CreateKey(ctxT(t, 10*time.Second), "", &kms.CreateKeyRequest{Name: "k"}), "create key")
			deks, err := c.client().GenerateKey(ctxT(t, 10*time.Second), "", &kms.GenerateKeyRequest{Name: "k"})
			noErr(t, err, "generate")
			dek := deks[0]
			c.restartOn(0, a, b)
			// The CLI this time: keep add-hsm, to the node configured with b.
			r := testnode.CLI(t, []string{c.nodes[1].Endpoint()}, c.root.String(), "add-hsm", b.Name, "--host", c.nodes[0].Addr, "-k")
			if r.Code != 0 {
				t.Fatalf("%s", r)
			}

			members := []int{0, 1}
			t.Run("on a sealing HSM", func(t *testing.T) {
				joined := c.newNode("joined", b)
				noErr(t, c.client(0).AddNode(ctxT(t, 60*time.Second), &kms.AddClusterNodeRequest{Host: joined.Host}), "add the node on %s", b.Name)
				members = append(members, 2)
				c.waitHealthy(members, 30*time.Second)
				c.wantHSMs(2, b.Name, []string{a.Name, b.Name}, []string{b.Name})
				cl := c.client(2)
				pt, err := cl.Decrypt(ctxT(t, 10*time.Second), "", &kms.DecryptRequest{Name: "k", Ciphertext: dek.Ciphertext})
				if err != nil || !bytes.Equal(pt[0].Plaintext, dek.Plaintext) {
					t.Fatalf("the joined node does not decrypt a data key made before: %s", testnode.DescribeErr(err))
				}
				_, err = cl.GenerateKey(ctxT(t, 10*time.Second), "", &kms.GenerateKeyRequest{Name: "k"})
				noErr(t, err, "generate on the joined node")
				// It starts again from its own kms.db.
				c.restartOn(2, b)
				c.wantHSMs(2, b.Name, []string{a.Name, b.Name}, []string{b.Name})
				// keep stat shows which HSM each node unsealed with.
				r := testnode.CLI(t, []string{c.nodes[1].Endpoint()}, c.root.String(), "stat", "--json", "-k")
				var stat struct {
					Nodes []struct {
						Host         string `json:"host"`
						UnsealedWith string `json:"unsealed_with"`
					} `json:"nodes"`
				}
				if err := json.Unmarshal([]byte(r.Stdout), &stat); r.Code != 0 || err != nil {
					t.Fatalf("keep stat --json: %v\n%s", err, r)
				}
				want := map[string]string{c.nodes[0].Host: a.Name, c.nodes[1].Host: a.Name, c.nodes[2].Host: b.Name}
				got := map[string]string{}
				for _, n := range stat.Nodes {
					got[n.Host] = n.UnsealedWith
				}
				if !maps.Equal(got, want) {
					t.Errorf("keep stat: the nodes unsealed with %v, want %v", got, want)
				}
			})

			t.Run("on an HSM without a seal", func(t *testing.T) {
				other := kind.new(t, "hsm-c")
				c := &hsmCluster{cluster: c.with(t), configs: c.configs, audits: c.audits}
				stranger := c.newNode("stranger", other)
				err := c.client(0).AddNode(ctxT(t, 60*time.Second), &kms.AddClusterNodeRequest{Host: stranger.Host})
				t.Logf("AddNode %s on %s: %s", stranger.Host, other.Name, testnode.DescribeErr(err))
				if err == nil {
					t.Fatalf("a node on %s, which does not seal the root key, joined", other.Name)
				}
				wantErrText(t, err, "add a node on an HSM without a seal", stranger.Host, "HSM")
				st, err := testnode.GetHSMStatus(t, other.RootAPIKey(t), stranger.Addr)
				noErr(t, err, "status of the refused node")
				if st.UnsealedWith != other.Name || !slices.Equal(st.Sealed, []string{other.Name}) {
					t.Errorf("the refused node is no longer its own cluster on %s: %s", other.Name, st)
				}
				c.waitHealthy(members, 10*time.Second)
			})
		})
	}
}

// newNode starts a fresh node on hsms (config file hsm: section) and adds
// it to c.nodes, not to the cluster. It lives as long as c's test.
func (c *hsmCluster) newNode(name string, hsms ...testnode.HSM) *testnode.Node {
	c.t.Helper()
	i := len(c.nodes)
	dir := c.t.TempDir()
	c.configs = append(c.configs, filepath.Join(dir, "keep.yaml"))
	c.audits = append(c.audits, filepath.Join(dir, "audit.log"))
	n := testnode.New(c.t, testnode.Options{Name: name, HSMKey: "-", Config: c.configs[i], NoAPIKey: true})
	c.nodes = append(c.nodes, n)
	c.configure(i, hsms[0], true, hsms[1:]...)
	noErr(c.t, n.Start(), "start node %s", name)
	return n
}

// TestHSMSecretsAtRest moves a cluster from the soft HSM key to the second
// HSM and then searches every file of every data directory and every line
// the nodes logged (stdout, stderr, audit) for the root encryption key,
// which the test unseals itself from the seals in kms.db, and for the
// HSMs' secrets, raw and in hex and base64.
func TestHSMSecretsAtRest(t *testing.T) {
	for _, kind := range hsmKinds {
		t.Run(kind.name, func(t *testing.T) {
			a, b := legacyHSM(t), kind.new(t, "hsm-b")
			c := newHSMCluster(t, 3, a)
			noErr(t, c.client().CreateKey(ctxT(t, 10*time.Second), "", &kms.CreateKeyRequest{Name: "k"}), "create key")
			c.move(a, b)
			_, err := c.client().GenerateKey(ctxT(t, 10*time.Second), "", &kms.GenerateKeyRequest{Name: "k"})
			noErr(t, err, "generate after the move")
			for _, n := range c.nodes {
				n.Stop()
			}

			secrets := map[string][]byte{}
			for i, n := range c.nodes {
				root := unsealRoot(t, n.Dir, b)
				if i > 0 && !bytes.Equal(root, secrets["root key"]) {
					t.Fatalf("node %d's kms.db seals another root key than node 0's", i)
				}
				secrets["root key"] = root
			}
			for _, h := range []testnode.HSM{a, b} {
				for j, s := range h.Secrets {
					secrets[fmt.Sprintf("secret %d of HSM %s", j, h.Name)] = s
				}
			}
			var files []string
			for i, n := range c.nodes {
				for path := range testnode.DirDigest(t, n.Dir) {
					files = append(files, path)
				}
				files = append(files, n.LogFiles()...)
				files = append(files, c.audits[i], c.configs[i])
			}
			searched := 0
			for _, path := range files {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				searched += len(data)
				for what, s := range secrets {
					if enc, ok := holds(data, s); ok {
						t.Errorf("%s holds the %s (%s)", path, what, enc)
					}
				}
			}
			t.Logf("searched %d files, %d bytes, for %d secrets in 5 spellings each", len(files), searched, len(secrets))
		})
	}
}

// unsealRoot unseals the root key from the seals in the kms.db of dir (a
// stopped node's) with h, which must seal it, as the only HSM.
func unsealRoot(t *testing.T, dir string, h testnode.HSM) []byte {
	t.Helper()
	db, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dir, "kms.db"),
		BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sealed, err := db.Get([]byte("keep/sealed-root-key"))
	if err != nil {
		t.Fatalf("%s: no sealed root key: %v", dir, err)
	}
	seals, err := hsm.DecodeSeals(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if len(seals) != 1 || seals[0].HSM != h.Name {
		t.Fatalf("%s: kms.db has seals of %v, want only %s", dir, hsm.Names(seals), h.Name)
	}
	root, err := h.Open(t).Unseal(context.Background(), seals[0].Sealed)
	if err != nil {
		t.Fatalf("%s: HSM %s does not unseal its seal: %v", dir, h.Name, err)
	}
	return root
}

// holds reports whether data holds secret raw, in hex (either case) or in
// base64 (either alphabet; unpadded, so padded too), and which.
func holds(data, secret []byte) (string, bool) {
	spellings := map[string]string{
		"raw":       string(secret),
		"hex":       hex.EncodeToString(secret),
		"HEX":       strings.ToUpper(hex.EncodeToString(secret)),
		"base64":    base64.RawStdEncoding.EncodeToString(secret),
		"base64url": base64.RawURLEncoding.EncodeToString(secret),
	}
	for what, s := range spellings {
		if bytes.Contains(data, []byte(s)) {
			return what, true
		}
	}
	return "", false
}

// TestHolds checks the search of TestHSMSecretsAtRest: it finds a secret
// in each spelling amid other bytes, and nothing where it is not.
func TestHolds(t *testing.T) {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i*7 + 3)
	}
	for _, tt := range []struct {
		name string
		data string
		want bool
	}{
		{"raw", string(secret), true},
		{"hex", hex.EncodeToString(secret), true},
		{"HEX", strings.ToUpper(hex.EncodeToString(secret)), true},
		{"base64", base64.StdEncoding.EncodeToString(secret), true},
		{"base64 unpadded", base64.RawStdEncoding.EncodeToString(secret), true},
		{"base64url", base64.URLEncoding.EncodeToString(secret), true},
		{"a part only", hex.EncodeToString(secret[:31]), false},
		{"another secret", base64.StdEncoding.EncodeToString(append([]byte{1}, secret[1:]...)), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(`{"msg":"x","v":"` + tt.data + `"}`)
			if _, got := holds(data, secret); got != tt.want {
				t.Errorf("holds = %v, want %v", got, tt.want)
			}
		})
	}
}
