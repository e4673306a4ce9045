package cluster_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// maxStaleness is the staleness bound of the partition tests.
const maxStaleness = 3 * time.Second

var stalenessConfig = fmt.Sprintf("version: v1\ncluster:\n  max_staleness: %v\n", maxStaleness)

// readAll runs generate, decrypt and key status on node i and returns the
// first failure.
func (c *cluster) readAll(i int, enclave, key string, dek *kms.GenerateKeyResponse) error {
	cl := c.client(i)
	ctx, cancel := ctxD(5 * time.Second)
	defer cancel()
	if _, err := cl.GenerateKey(ctx, enclave, &kms.GenerateKeyRequest{Name: key}); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	pt, err := cl.Decrypt(ctx, enclave, &kms.DecryptRequest{Name: key, Ciphertext: dek.Ciphertext})
	if err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	if !bytes.Equal(pt[0].Plaintext, dek.Plaintext) {
		return fmt.Errorf("decrypt: another plaintext")
	}
	if _, err := cl.KeyStatus(ctx, enclave, &kms.KeyStatusRequest{Name: key}); err != nil {
		return fmt.Errorf("key status: %w", err)
	}
	return nil
}

// timedWrite creates key name through node i directly and returns how
// long it took and the error.
func (c *cluster) timedWrite(i int, enclave, name string, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := ctxD(timeout)
	defer cancel()
	start := time.Now()
	err := c.client(i).CreateKey(ctx, enclave, &kms.CreateKeyRequest{Name: name})
	return time.Since(start), err
}

// TestPartition cuts the network between nodes (through the proxies) rather
// than killing them: first a follower is cut off, then the leader.
func TestPartition(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{proxied: true, config: stalenessConfig})
	c.form()
	const enclave, key = "partition", "k"
	all := c.client()
	noErr(t, all.CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave")
	noErr(t, all.CreateKey(ctxT(t, 10*time.Second), enclave, &kms.CreateKeyRequest{Name: key}), "create key")
	deks, err := all.GenerateKey(ctxT(t, 10*time.Second), enclave, &kms.GenerateKeyRequest{Name: key})
	noErr(t, err, "generate")
	dek := deks[0]

	t.Run("minority", func(t *testing.T) {
		c := c.with(t)
		l := c.lead()
		f := c.others(l)[0]
		majority := c.others(f)
		c.net.isolate(f, blackhole)
		cut := time.Now()

		// The isolated node serves reads within the staleness bound.
		if err := c.readAll(f, enclave, key, dek); err != nil {
			t.Errorf("isolated node %d, %v after the cut: %s", f, time.Since(cut).Round(time.Millisecond), testnode.DescribeErr(err))
		}
		// The majority goes on.
		names, slow := createKeys(t, c.client(majority...), enclave, "majority", 5)
		t.Logf("node %d cut off (blackhole): 5 writes through the majority %v succeeded, slowest %v", f, majority, slow.Round(time.Millisecond))
		for _, i := range majority {
			c.wantKeys(t, i, enclave, names)
		}
		// A write on the isolated node fails.
		took, err := c.timedWrite(f, enclave, "on-isolated", 40*time.Second)
		t.Logf("write on the isolated node: %s after %v", testnode.DescribeErr(err), took.Round(time.Millisecond))
		if err == nil {
			t.Errorf("a write on the isolated node succeeded")
		} else if s := testnode.StatusOf(err); s != http.StatusServiceUnavailable {
			t.Errorf("write on the isolated node: %s, want 503", testnode.DescribeErr(err))
		}
		if took > 5*time.Second {
			t.Errorf("write on the isolated node took %v to fail; a majority-down write fails within ~2s", took.Round(time.Millisecond))
		}
		if ok, _ := keyExists(ctxT(t, 5*time.Second), c.client(f), enclave, names[0]); ok {
			t.Errorf("isolated node serves a key created after the cut")
		}

		// After the staleness bound it refuses reads.
		time.Sleep(time.Until(cut.Add(maxStaleness + 500*time.Millisecond)))
		err = c.readAll(f, enclave, key, dek)
		t.Logf("read on the isolated node %v after the cut: %s", time.Since(cut).Round(time.Millisecond), testnode.DescribeErr(err))
		wantStatus(t, err, http.StatusServiceUnavailable, "read on a node cut off for longer than max_staleness")
		wantErrText(t, err, "stale read", "staleness")
		for _, i := range majority {
			if err := c.readAll(i, enclave, key, dek); err != nil {
				t.Errorf("majority node %d: %s", i, testnode.DescribeErr(err))
			}
		}

		// Heal: it catches up and serves again.
		c.net.heal()
		healed := time.Now()
		for {
			err := c.readAll(f, enclave, key, dek)
			ok, _ := keyExists(ctxT(t, 5*time.Second), c.client(f), enclave, names[len(names)-1])
			if err == nil && ok {
				break
			}
			if time.Since(healed) > 15*time.Second {
				t.Fatalf("healed node %d does not serve the current state within 15s: %s, has newest key: %v", f, testnode.DescribeErr(err), ok)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("healed: node %d serves the current state %v after healing", f, time.Since(healed).Round(time.Millisecond))
		c.wantKeys(t, f, enclave, names)
		c.waitHealthy(c.others(), 10*time.Second)
	})

	t.Run("leader", func(t *testing.T) {
		c := c.with(t)
		l := c.lead()
		majority := c.others(l)
		c.net.isolate(l, drop)
		cut := time.Now()
		// A write on the old leader right at the cut, while it may still
		// think it leads.
		type result struct {
			err  error
			took time.Duration
		}
		early := make(chan result, 1)
		go func() {
			took, err := c.timedWrite(l, enclave, "on-old-leader-early", 40*time.Second)
			early <- result{err, took}
		}()
		_, fails, created := writeUntil(c.client(majority...), enclave, "new-leader", 10*time.Second)
		took := time.Since(cut)
		nl := c.waitLeader(majority[0], majority, 10*time.Second)
		t.Logf("leader node %d cut off (connections reset): node %d leads; the first write through the majority succeeded %v after the cut (failed before: %v)",
			l, nl, took.Round(time.Millisecond), fails)
		if created == "" {
			t.Fatalf("no write through the majority within 10s")
		}
		if took > 5*time.Second {
			t.Errorf("writes through the majority resumed only %v after the leader was cut off, want < 5s", took)
		}
		r := <-early
		t.Logf("write on the old leader at the cut: %s after %v", testnode.DescribeErr(r.err), r.took.Round(time.Millisecond))
		if r.err == nil {
			t.Errorf("write on the cut-off old leader succeeded")
		}
		// The old leader's writes fail.
		for i := range 3 {
			took, err := c.timedWrite(l, enclave, fmt.Sprintf("on-old-leader-%d", i), 40*time.Second)
			t.Logf("write %d on the old leader: %s after %v", i, testnode.DescribeErr(err), took.Round(time.Millisecond))
			if err == nil {
				t.Errorf("write on the cut-off old leader succeeded")
			}
		}
		vs, err := c.views(l)
		if err == nil {
			t.Logf("old leader's view of itself: %+v", vs[l])
			if vs[l].role == "Leader" {
				t.Errorf("cut-off old leader still says it is Leader %v after the cut", time.Since(cut).Round(time.Millisecond))
			}
		}

		c.net.heal()
		c.waitHealthy(append([]int{nl}, c.others(nl)...), 15*time.Second)
		// Every node agrees on every key, including the old leader's
		// failed writes (a 503 that "may or may not have been applied"
		// may have been; then it must be everywhere).
		names := []string{created, "on-old-leader-early"}
		for i := range 3 {
			names = append(names, fmt.Sprintf("on-old-leader-%d", i))
		}
		for _, name := range names {
			var seen []string
			for i := range c.nodes {
				ok, err := keyExists(ctxT(t, 5*time.Second), c.client(i), enclave, name)
				noErr(t, err, "key status %s on node %d", name, i)
				seen = append(seen, fmt.Sprintf("n%d=%v", i, ok))
			}
			if strings.Count(strings.Join(seen, " "), "true") != 0 && strings.Count(strings.Join(seen, " "), "false") != 0 {
				t.Errorf("nodes disagree on key %s after healing: %v", name, seen)
			}
			if name == created && strings.Contains(strings.Join(seen, " "), "false") {
				t.Errorf("acknowledged key %s missing after healing: %v", name, seen)
			}
			t.Logf("after healing, key %s: %v", name, seen)
		}
	})
}
