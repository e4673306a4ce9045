package cluster_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// TestFiveNodes forms a 5-node cluster and kills nodes: with two down it
// takes writes, with three down it refuses them and serves reads.
func TestFiveNodes(t *testing.T) {
	c := newCluster(t, 5, clusterOpts{})
	c.form()
	const enclave, key = "five", "k"
	all := c.client()
	noErr(t, all.CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave")
	noErr(t, all.CreateKey(ctxT(t, 10*time.Second), enclave, &kms.CreateKeyRequest{Name: key}), "create key")
	deks, err := all.GenerateKey(ctxT(t, 10*time.Second), enclave, &kms.GenerateKeyRequest{Name: key})
	noErr(t, err, "generate")

	// Kill two, the leader among them.
	l := c.lead()
	f := c.others(l)[0]
	survivors := c.others(l, f)
	rd := startReaders(t, c, survivors, enclave, key, deks[0])
	c.nodes[l].Kill()
	c.nodes[f].Kill()
	took, fails, created := writeUntil(c.client(survivors...), enclave, "two-down", 15*time.Second)
	t.Logf("5 nodes, leader %d and node %d killed: first write through the survivors succeeded %v after the kills (failures before: %v)", l, f, took.Round(time.Millisecond), fails)
	if created == "" || took > 5*time.Second {
		t.Errorf("with 3 of 5 nodes up, writes did not resume within 5s")
	}
	names, slow := createKeys(t, c.client(survivors...), enclave, "two-down-more", 5)
	t.Logf("5 more writes with 3 of 5 up, slowest %v", slow.Round(time.Millisecond))
	for _, i := range survivors {
		c.wantKeys(t, i, enclave, append(names, created))
	}

	rd.stop(t, "2 of 5 killed")

	// Kill a third: no majority.
	third := survivors[0]
	rest := survivors[1:]
	rd = startReaders(t, c, rest, enclave, key, deks[0])
	c.nodes[third].Kill()
	time.Sleep(100 * time.Millisecond)
	for _, i := range rest {
		took, err := c.timedWrite(i, enclave, "three-down", 20*time.Second)
		t.Logf("write on node %d with 2 of 5 up: %s after %v", i, testnode.DescribeErr(err), took.Round(time.Millisecond))
		wantStatus(t, err, http.StatusServiceUnavailable, "write with 2 of 5 up")
		if took > 3*time.Second {
			t.Errorf("write with 2 of 5 up took %v to fail, want < 3s", took)
		}
		if d := c.waitReady(t, i, "?write", http.StatusServiceUnavailable, 3*time.Second); d > 0 {
			t.Logf("node %d: ready?write turned 503 %v after that", i, d.Round(time.Millisecond))
		}
	}
	for _, i := range rest {
		if err := c.readAll(i, enclave, key, deks[0]); err != nil {
			t.Errorf("read on node %d with 2 of 5 up: %s", i, testnode.DescribeErr(err))
		}
	}
	rd.stop(t, "3 of 5 killed")

	// Bring them back.
	c.startAll(l, f, third)
	c.waitHealthy(c.others(), 20*time.Second)
	for i := range c.nodes {
		c.wantKeys(t, i, enclave, append(names, created))
	}
}
