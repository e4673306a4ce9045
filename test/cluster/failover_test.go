package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// others returns the node indexes of c except those given.
func (c *cluster) others(except ...int) []int {
	var idx []int
	for i := range c.nodes {
		if !slices.Contains(except, i) {
			idx = append(idx, i)
		}
	}
	return idx
}

// readers runs generate, decrypt and key status on each of the given nodes
// (directly, no failover) in a loop and records every failure.
type readers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ops    atomic.Int64
	mu     sync.Mutex
	errs   []string
}

func startReaders(t *testing.T, c *cluster, nodes []int, enclave, key string, dek *kms.GenerateKeyResponse) *readers {
	ctx, cancel := context.WithCancel(context.Background())
	r := &readers{cancel: cancel}
	for _, i := range nodes {
		cl := c.client(i)
		r.wg.Go(func() {
			for ctx.Err() == nil {
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := cl.GenerateKey(rctx, enclave, &kms.GenerateKeyRequest{Name: key})
				what := "generate"
				if err == nil {
					what = "decrypt"
					var pt []*kms.DecryptResponse
					pt, err = cl.Decrypt(rctx, enclave, &kms.DecryptRequest{Name: key, Ciphertext: dek.Ciphertext})
					if err == nil && !bytes.Equal(pt[0].Plaintext, dek.Plaintext) {
						err = fmt.Errorf("decrypts to another plaintext")
					}
				}
				if err == nil {
					what = "key status"
					_, err = cl.KeyStatus(rctx, enclave, &kms.KeyStatusRequest{Name: key})
				}
				rcancel()
				if ctx.Err() != nil {
					return
				}
				r.ops.Add(1)
				if err != nil {
					r.mu.Lock()
					r.errs = append(r.errs, fmt.Sprintf("%s on node %d at %s: %s", what, i, time.Now().Format("15:04:05.000"), testnode.DescribeErr(err)))
					r.mu.Unlock()
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	return r
}

// stop ends the readers and fails the test if any read failed.
func (r *readers) stop(t *testing.T, phase string) {
	t.Helper()
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("%s: %d read rounds (generate, decrypt, key status) on the surviving nodes, %d failed", phase, r.ops.Load(), len(r.errs))
	for i, e := range r.errs {
		if i == 10 {
			t.Errorf("… and %d more", len(r.errs)-10)
			break
		}
		t.Errorf("%s: read failed: %s", phase, e)
	}
}

// writeUntil creates keys named prefix-N through cl until one succeeds or
// timeout passes, and returns how long that took, the failures before and
// the name of the key created ("" if none).
func writeUntil(cl *kms.Client, enclave, prefix string, timeout time.Duration) (time.Duration, []string, string) {
	start := time.Now()
	var fails []string
	for i := 0; ; i++ {
		ctx, cancel := ctxD(5 * time.Second)
		name := fmt.Sprintf("%s-%d", prefix, i)
		err := cl.CreateKey(ctx, enclave, &kms.CreateKeyRequest{Name: name})
		cancel()
		if err == nil {
			return time.Since(start), fails, name
		}
		fails = append(fails, fmt.Sprintf("+%v: %s", time.Since(start).Round(time.Millisecond), testnode.DescribeErr(err)))
		if time.Since(start) > timeout {
			return time.Since(start), fails, ""
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ready asks node i's readiness endpoint and returns the status.
func (c *cluster) ready(t *testing.T, i int, query string) int {
	t.Helper()
	hc := testnode.HTTPClient(t, c.root, 5*time.Second)
	resp, err := hc.Get(c.nodes[i].Endpoint() + "/v1/health/ready" + query)
	if err != nil {
		t.Fatalf("ready%s on node %d: %v", query, i, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReady polls node i's readiness endpoint until it answers want, and
// returns how long that took; it fails the test after timeout.
func (c *cluster) waitReady(t *testing.T, i int, query string, want int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := c.ready(t, i, query)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Errorf("node %d: /v1/health/ready%s answers %d for %v, want %d", i, query, got, timeout, want)
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantKeys fails the test unless node i serves every key.
func (c *cluster) wantKeys(t *testing.T, i int, enclave string, keys []string) {
	t.Helper()
	cl := c.client(i)
	for _, k := range keys {
		if _, err := cl.KeyStatus(ctxT(t, 5*time.Second), enclave, &kms.KeyStatusRequest{Name: k}); err != nil {
			t.Errorf("node %d does not serve key %s: %s", i, k, testnode.DescribeErr(err))
		}
	}
}

// createKeys creates keys prefix-0 … prefix-(n-1) through cl; each must
// succeed. It returns their names and the slowest write.
func createKeys(t *testing.T, cl *kms.Client, enclave, prefix string, n int) ([]string, time.Duration) {
	t.Helper()
	var names []string
	var slowest time.Duration
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		start := time.Now()
		noErr(t, cl.CreateKey(ctxT(t, 10*time.Second), enclave, &kms.CreateKeyRequest{Name: name}), "create %s", name)
		slowest = max(slowest, time.Since(start))
		names = append(names, name)
	}
	return names, slowest
}

// TestFailover kills nodes of a 3-node cluster with SIGKILL: the leader, a
// follower, then two of three, and restarts them. Clients are given every
// endpoint, as MinIO is.
func TestFailover(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.form()
	const enclave, key = "failover", "k"
	all := c.client()
	noErr(t, all.CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave")
	noErr(t, all.CreateKey(ctxT(t, 10*time.Second), enclave, &kms.CreateKeyRequest{Name: key}), "create key")
	deks, err := all.GenerateKey(ctxT(t, 10*time.Second), enclave, &kms.GenerateKeyRequest{Name: key})
	noErr(t, err, "generate")
	dek := deks[0]

	// Kill the leader: a new one is elected and writes succeed again.
	l := c.lead()
	survivors := c.others(l)
	rd := startReaders(t, c, survivors, enclave, key, dek)
	time.Sleep(200 * time.Millisecond)
	c.nodes[l].Kill()
	failover, fails, created := writeUntil(all, enclave, "after-leader-kill", 15*time.Second)
	newLeader := c.waitLeader(survivors[0], survivors, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	rd.stop(t, "leader killed")
	t.Logf("leader node %d killed: node %d leads; the first write through every endpoint succeeded %v after the kill (%d failed attempts before: %v)", l, newLeader, failover.Round(time.Millisecond), len(fails), fails)
	if created == "" || failover > 5*time.Second {
		t.Errorf("writes did not succeed again within 5s of killing the leader: %v, failures %v", failover, fails)
	}
	missed, slow := createKeys(t, all, enclave, "missed-by-old-leader", 5)
	t.Logf("5 writes with the old leader down, slowest %v", slow.Round(time.Millisecond))

	// Restart it: it catches up, including the writes it missed.
	restart := time.Now()
	c.nodes[l].MustStart()
	c.waitHealthy(append([]int{l}, survivors...), 15*time.Second)
	t.Logf("old leader node %d restarted and caught up in %v", l, time.Since(restart).Round(time.Millisecond))
	c.wantKeys(t, l, enclave, append(missed, created))

	// Kill a follower: reads and writes go on.
	l = c.lead()
	f := c.others(l)[0]
	survivors = c.others(f)
	rd = startReaders(t, c, survivors, enclave, key, dek)
	c.nodes[f].Kill()
	missed, slow = createKeys(t, all, enclave, "missed-by-follower", 10)
	rd.stop(t, "follower killed")
	t.Logf("follower node %d killed: 10 writes through every endpoint all succeeded, slowest %v", f, slow.Round(time.Millisecond))
	c.nodes[f].MustStart()
	c.waitHealthy(c.others(), 15*time.Second)
	c.wantKeys(t, f, enclave, missed)

	// Kill two of three: writes fail fast with 503; the survivor serves
	// reads and reports that it cannot take writes.
	l = c.lead()
	s := c.others(l)[0]
	other := c.others(l, s)[0]
	rd = startReaders(t, c, []int{s}, enclave, key, dek)
	c.nodes[l].Kill()
	c.nodes[other].Kill()
	direct := c.client(s)
	for i := range 3 {
		start := time.Now()
		ctx, cancel := ctxD(20 * time.Second)
		err := direct.CreateKey(ctx, enclave, &kms.CreateKeyRequest{Name: fmt.Sprintf("no-majority-%d", i)})
		cancel()
		took := time.Since(start)
		t.Logf("write %d on the survivor node %d without a majority: %s after %v", i, s, testnode.DescribeErr(err), took.Round(time.Millisecond))
		wantStatus(t, err, http.StatusServiceUnavailable, "write without a majority")
		if took > 3*time.Second {
			t.Errorf("write without a majority took %v to fail, want < 3s", took)
		}
	}
	// A fresh client: kms-go suspends a host for 30 s after a failure, and
	// the survivor failed requests of the old client when it was killed.
	start := time.Now()
	ctx, cancel := ctxD(30 * time.Second)
	err = c.client().CreateKey(ctx, enclave, &kms.CreateKeyRequest{Name: "no-majority-all"})
	cancel()
	t.Logf("write through every endpoint without a majority: %s after %v", testnode.DescribeErr(err), time.Since(start).Round(time.Millisecond))
	wantStatus(t, err, http.StatusServiceUnavailable, "write through every endpoint without a majority")
	if got := c.ready(t, s, "?write"); got != http.StatusServiceUnavailable {
		t.Errorf("/v1/health/ready?write on the survivor: %d, want 503", got)
	}
	if got := c.ready(t, s, ""); got != http.StatusOK {
		t.Errorf("/v1/health/ready on the survivor: %d, want 200", got)
	}
	rd.stop(t, "two of three killed")

	// Restart both: the cluster is whole again and takes writes, and every
	// node serves them.
	c.startAll(l, other)
	c.waitHealthy(c.others(), 15*time.Second)
	names, _ := createKeys(t, all, enclave, "after-repair", 3)
	for i := range c.nodes {
		c.wantKeys(t, i, enclave, names)
		if _, err := c.client(i).KeyStatus(ctxT(t, 5*time.Second), enclave, &kms.KeyStatusRequest{Name: "no-majority-0"}); testnode.StatusOf(err) != http.StatusNotFound {
			t.Errorf("node %d: a write that failed with 503 exists: %s", i, testnode.DescribeErr(err))
		}
	}
}
