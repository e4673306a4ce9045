package cluster_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/test/testnode"
)

var (
	hsmKeyRE    = regexp.MustCompile(`hsm:aes256:[A-Za-z0-9+/=]{44}`)
	apiKeyLine  = regexp.MustCompile(`(?m)^\s*API Key\s+(k[12]:[A-Za-z0-9_-]+)\s*$`)
	clusterCmds = []string{"add", "stat"}
)

// hasClusterCLI reports whether the binary has the cluster commands the
// deployment guide uses.
func hasClusterCLI(t *testing.T) bool {
	for _, c := range clusterCmds {
		if !testnode.HasCommand(t, c) {
			return false
		}
	}
	return true
}

// cli runs a keep client command against the given nodes as apiKey and
// fails the test unless it succeeds.
func (c *cluster) cli(apiKey string, nodes []int, args ...string) testnode.Result {
	c.t.Helper()
	var servers []string
	for _, i := range nodes {
		servers = append(servers, c.nodes[i].Endpoint())
	}
	r := testnode.CLI(c.t, servers, apiKey, append(args, "-k")...)
	if r.Code != 0 {
		c.t.Fatalf("%s", r)
	}
	return r
}

// TestFormCluster deploys a 3-node cluster as the deployment guide's steps
// 1-6 do, and checks that every object created on any node is visible on
// every node as soon as the write is acknowledged.
func TestFormCluster(t *testing.T) {
	// 1. Generate a shared HSM key.
	r := testnode.Run(t, testnode.BaseEnv(t.TempDir()), "--soft-hsm")
	hsmKey := hsmKeyRE.FindString(r.Stdout)
	if r.Code != 0 || hsmKey == "" {
		t.Fatalf("keep --soft-hsm printed no HSM key:\n%s", r)
	}

	// 2, 3. Start three nodes with it, each a one-node cluster with the
	// same root API key.
	c := &cluster{t: t, hsm: hsmKey}
	for i := range 3 {
		addr := testnode.AllocAddr(t)
		c.nodes = append(c.nodes, testnode.New(t, testnode.Options{Name: fmt.Sprintf("n%d", i), Addr: addr, HSMKey: hsmKey}))
	}
	c.startAll(0, 1, 2)
	c.root = c.nodes[0].Root
	for i, n := range c.nodes {
		if n.APIKey != c.nodes[0].APIKey {
			t.Fatalf("node %d: API key %s, node 0: %s", i, n.APIKey, c.nodes[0].APIKey)
		}
		if !strings.Contains(n.Banner, "Endpoint") || !strings.Contains(n.Banner, n.Host) {
			t.Errorf("node %d banner does not show its endpoint %s:\n%s", i, n.Host, n.Banner)
		}
		vs, err := c.views(i)
		noErr(t, err, "status of node %d before forming", i)
		if len(vs) != 1 || vs[i].role != "Leader" {
			t.Errorf("fresh node %d is not a one-node cluster it leads: %v", i, vs)
		}
	}
	rootKey := c.nodes[0].APIKey

	// 4. Form the cluster from node 0.
	cliMode := hasClusterCLI(t)
	if cliMode {
		for _, i := range []int{1, 2} {
			c.cli(rootKey, []int{0}, "add", c.nodes[i].Host)
		}
	} else {
		t.Log("keep has no cluster commands (add, stat) yet: forming the cluster with kms-go AddNode instead of the CLI")
		for _, i := range []int{1, 2} {
			noErr(t, c.client(0).AddNode(ctxT(t, time.Minute), &kms.AddClusterNodeRequest{Host: c.nodes[i].Host}), "AddNode %s", c.nodes[i].Host)
		}
	}

	// 5. Verify: all up, one Leader, identical commits, from every node.
	if cliMode {
		out := c.cli(rootKey, []int{0}, "stat").Stdout
		leaders := len(regexp.MustCompile(`(?m)^\s+State\s+Leader\s*$`).FindAllString(out, -1))
		followers := len(regexp.MustCompile(`(?m)^\s+State\s+Follower\s*$`).FindAllString(out, -1))
		if !strings.Contains(out, "All [3/3] nodes are up") || leaders != 1 || followers != 2 {
			t.Errorf("keep stat does not show all 3 nodes up, one Leader and two Followers:\n%s", out)
		}
		commits := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s+Commit\s+(\d+)\s*$`).FindAllStringSubmatch(out, -1) {
			commits[m[1]] = true
		}
		if len(commits) != 1 {
			t.Errorf("keep stat does not show one commit for all nodes: %v\n%s", commits, out)
		}
		t.Logf("keep stat:\n%s", out)
	}
	vs := c.waitHealthy([]int{0, 1, 2}, 10*time.Second)
	for i := range 3 {
		other, err := c.views(i)
		noErr(t, err, "status via node %d", i)
		if msg := healthy(other, []int{0, 1, 2}); msg != "" {
			t.Errorf("status via node %d: %s", i, msg)
		}
	}
	t.Logf("formed: %v", vs)

	// 6. Enclave and admin identity on node 0; a key made by the admin on
	// node 1 is listed on node 2.
	const enclave = "aistor-primary"
	var adminKey string
	out := c.cli(rootKey, []int{0}, "add-enclave", enclave)
	_ = out
	out = c.cli(rootKey, []int{0}, "add-identity", "--enclave", enclave, "--admin")
	m := apiKeyLine.FindStringSubmatch(out.Stdout)
	if m == nil {
		t.Fatalf("add-identity printed no API key:\n%s", out)
	}
	adminKey = m[1]
	c.cli(adminKey, []int{1}, "add-key", "sse-key", "--enclave", enclave)
	ls := c.cli(adminKey, []int{2}, "ls-key", "--enclave", enclave)
	if !strings.Contains(ls.Stdout, "sse-key") {
		t.Errorf("ls-key on node 2 does not list sse-key:\n%s", ls)
	}
	// AIStor's view: all nodes as endpoints, the admin key.
	admin, err := mtls.ParsePrivateKey(adminKey)
	noErr(t, err, "parse admin key")
	aistor := c.clientKey(admin)
	dek, err := aistor.GenerateKey(ctxT(t, 10*time.Second), enclave, &kms.GenerateKeyRequest{Name: "sse-key", AssociatedData: []byte("bucket/object")})
	noErr(t, err, "GenerateKey via every endpoint")
	for i := range 3 {
		pt, err := c.clientKey(admin, i).Decrypt(ctxT(t, 10*time.Second), enclave, &kms.DecryptRequest{Name: "sse-key", Ciphertext: dek[0].Ciphertext, AssociatedData: []byte("bucket/object")})
		noErr(t, err, "Decrypt on node %d", i)
		if string(pt[0].Plaintext) != string(dek[0].Plaintext) {
			t.Errorf("node %d decrypts to another plaintext", i)
		}
	}

	readAfterWrite(t, c, enclave)
}

// readAfterWrite writes objects of every kind through each node in turn
// and checks, right after each acknowledgement, that every node serves the
// new state. Twice the cluster idles for longer than a follower's applied
// report counts (2 s) before the next write.
func readAfterWrite(t *testing.T, c *cluster, enclave string) {
	c.nodes[0].DeleteAtOnce(t) // deleted keys are gone at once
	n := len(c.nodes)
	direct := make([]*kms.Client, n)
	for i := range direct {
		direct[i] = c.client(i)
	}
	type miss struct {
		what string
		node int
		lag  time.Duration // until the node served the write; -1 never (within 2 s)
	}
	var misses []miss
	// check asks every node whether the write is visible; a node that does
	// not see it yet is polled to measure the lag.
	check := func(what string, visible func(ctx context.Context, cl *kms.Client) (bool, error)) {
		acked := time.Now()
		for i, cl := range direct {
			ok, err := visible(ctxT(t, 5*time.Second), cl)
			if err != nil {
				t.Fatalf("%s: read on node %d: %s", what, i, testnode.DescribeErr(err))
			}
			if ok {
				continue
			}
			lag := time.Duration(-1)
			for time.Since(acked) < 2*time.Second {
				time.Sleep(time.Millisecond)
				if ok, _ := visible(ctxT(t, 5*time.Second), cl); ok {
					lag = time.Since(acked)
					break
				}
			}
			misses = append(misses, miss{what, i, lag})
		}
	}

	const rounds = 45
	writes := 0
	for r := range rounds {
		if r == 15 || r == 30 {
			time.Sleep(2500 * time.Millisecond) // idle: followers' reports go stale
		}
		w := direct[r%n]
		ctx := ctxT(t, 10*time.Second)
		key := fmt.Sprintf("raw-%d", r)
		noErr(t, w.CreateKey(ctx, enclave, &kms.CreateKeyRequest{Name: key}), "create %s via node %d", key, r%n)
		writes++
		check(fmt.Sprintf("create key %s via node %d (round %d)", key, r%n, r), func(ctx context.Context, cl *kms.Client) (bool, error) {
			return keyExists(ctx, cl, enclave, key)
		})
		switch r % 5 {
		case 1: // delete the previous key
			prev := fmt.Sprintf("raw-%d", r-1)
			noErr(t, w.DeleteKey(ctx, enclave, &kms.DeleteKeyRequest{Name: prev, AllVersions: true}), "delete %s", prev)
			writes++
			check(fmt.Sprintf("delete key %s via node %d", prev, r%n), func(ctx context.Context, cl *kms.Client) (bool, error) {
				ok, err := keyExists(ctx, cl, enclave, prev)
				return !ok, err
			})
		case 2: // an enclave
			name := fmt.Sprintf("enc-%d", r)
			noErr(t, w.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: name}), "create enclave %s", name)
			writes++
			check("create enclave "+name, func(ctx context.Context, cl *kms.Client) (bool, error) {
				_, err := cl.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: name})
				return err == nil, ignoreNotFound(err)
			})
		case 3: // a policy
			name := fmt.Sprintf("pol-%d", r)
			noErr(t, w.CreatePolicy(ctx, enclave, &kms.CreatePolicyRequest{Name: name, Allow: map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: {"*": {}}}}), "create policy %s", name)
			writes++
			check("create policy "+name, func(ctx context.Context, cl *kms.Client) (bool, error) {
				_, err := cl.GetPolicy(ctx, enclave, &kms.PolicyRequest{Name: name})
				return err == nil, ignoreNotFound(err)
			})
		case 4: // an identity
			id := testnode.NewAPIKey(t).Identity()
			noErr(t, w.CreateIdentity(ctx, enclave, &kms.CreateIdentityRequest{Identity: id, Privilege: kms.Admin}), "create identity")
			writes++
			check("create identity "+id.String(), func(ctx context.Context, cl *kms.Client) (bool, error) {
				_, err := cl.GetIdentity(ctx, enclave, &kms.IdentityRequest{Identity: id})
				return err == nil, ignoreNotFound(err)
			})
		}
	}
	t.Logf("read-after-write: %d acknowledged writes, each read on %d nodes right after; %d stale reads", writes, n, len(misses))
	for _, m := range misses {
		t.Errorf("stale read right after an acknowledged write: %s: node %d did not serve it (served after %v; -1 = not within 2s)", m.what, m.node, m.lag)
	}

	// In the end, every node holds the same commit.
	c.waitHealthy(allIdx(n), 5*time.Second)
}

func ignoreNotFound(err error) error {
	if testnode.StatusOf(err) == 404 {
		return nil
	}
	return err
}
