package cluster_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// previousRelease is the keep a rolling upgrade starts from: main as it was
// before errors crossed the node transport by stable codes (its nodes send
// an error's kind alone, and read nothing else), before membership changes
// were serialized and before a leader checked what it appends. Its data
// directories and log entries are those of today's main: the upgrade is of
// the wire between nodes.
const previousRelease = "671eb02"

// TestRollingUpgrade runs a 3-node cluster on the previous release,
// upgrades it one node at a time to the keep under test while clients
// create keys through every node, and checks at every step that every
// node serves, that errors forwarded between an old and a new node keep
// their meaning (409 key exists, 404 enclave not found, whichever of the
// two leads), and at the end that no acknowledged write was lost.
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the keep of an earlier commit")
	}
	old := testnode.OldBinary(t, previousRelease)
	c := newCluster(t, 3, clusterOpts{binary: old})
	c.form()
	const enclave = "upgrade"
	noErr(t, c.client().CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave")
	noErr(t, c.client().CreateKey(ctxT(t, 10*time.Second), enclave, &kms.CreateKeyRequest{Name: "exists"}), "create key")
	upgraded := make([]bool, 3)
	version := func(i int) string {
		if upgraded[i] {
			return "new"
		}
		return "old"
	}
	load := startLoader(c, allIdx(3), enclave, 4)

	// seen records which pairs (the node asked → the leader) forwarded a
	// refused write and kept its error.
	seen := map[string]bool{}
	check := func(step string) {
		t.Helper()
		l := c.lead()
		for i := range c.nodes {
			c.wantKeys(t, i, enclave, []string{"exists"})
			if i == l {
				continue
			}
			pair := version(i) + " follower → " + version(l) + " leader"
			err := c.client(i).CreateKey(ctxT(t, 10*time.Second), enclave, &kms.CreateKeyRequest{Name: "exists"})
			wantStatus(t, err, http.StatusConflict, "%s: create an existing key through node %d, %s", step, i, pair)
			wantErrText(t, err, pair, "key already exists")
			err = c.client(i).CreateKey(ctxT(t, 10*time.Second), "no-such-enclave", &kms.CreateKeyRequest{Name: "k"})
			wantStatus(t, err, http.StatusNotFound, "%s: create a key in a missing enclave through node %d, %s", step, i, pair)
			seen[pair] = true
		}
	}
	upgrade := func(i int) {
		t.Helper()
		c.nodes[i].Stop()
		c.nodes[i].MustStart()
		upgraded[i] = true
		c.waitHealthy(allIdx(3), 30*time.Second)
	}
	check("all old")

	l := c.lead()
	f := c.others(l)
	upgrade(f[0])
	check(fmt.Sprintf("node %d upgraded", f[0]))

	// A new node must lead while an old one follows: restart old leaders
	// (on the old keep) until the election picks the new node.
	for attempt := 0; !upgraded[c.lead()]; attempt++ {
		if attempt == 8 {
			t.Fatalf("the upgraded node %d did not become leader in %d elections", f[0], attempt)
		}
		l := c.lead()
		c.nodes[l].Stop()
		c.waitLeader(f[0], c.others(l), 10*time.Second)
		c.nodes[l].StartWith(t, old)
		c.waitHealthy(allIdx(3), 30*time.Second)
	}
	check("a new leader")

	// The rest, followers first.
	for _, i := range append(c.others(c.lead()), c.lead()) {
		if !upgraded[i] {
			upgrade(i)
			check(fmt.Sprintf("node %d upgraded", i))
		}
	}
	for _, pair := range []string{"old follower → old leader", "new follower → old leader", "old follower → new leader", "new follower → new leader"} {
		if !seen[pair] {
			t.Errorf("the upgrade never had a %s", pair)
		}
	}

	acked := load.stop(t)
	t.Logf("%d keys acknowledged during the upgrade", len(acked))
	if len(acked) < 20 {
		t.Errorf("only %d writes were acknowledged: the load did not run", len(acked))
	}
	c.waitHealthy(allIdx(3), 10*time.Second)
	for i := range c.nodes {
		c.wantKeys(t, i, enclave, acked)
	}
}
