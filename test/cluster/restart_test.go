package cluster_test

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// postRestart POSTs /v1/debug/restart (query "" or "?self") to node i as
// key. It returns the status, or 0 and the error if the connection broke,
// which the guide says may happen while servers restart.
func (c *cluster) postRestart(t *testing.T, i int, key mtls.PrivateKey, query string) (int, error) {
	t.Helper()
	hc := testnode.HTTPClient(t, key, 30*time.Second)
	resp, err := hc.Post(c.nodes[i].Endpoint()+"/v1/debug/restart"+query, "", http.NoBody)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitRestarted waits until each node i printed ups[i] banners and logs
// when each did, relative to sent.
func (c *cluster) waitRestarted(t *testing.T, sent time.Time, ups []int) {
	t.Helper()
	took := make([]time.Duration, len(c.nodes))
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		wg.Go(func() {
			errs[i] = n.WaitUps(ups[i], 30*time.Second)
			took[i] = time.Since(sent).Round(time.Millisecond)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d did not restart in place: %v", i, err)
		}
	}
	t.Logf("nodes up again after (node: time since the request) %v", took)
}

// TestRestart restarts the whole cluster and single nodes through
// /v1/debug/restart: each process re-executes itself (same PID, a second
// banner, uptime reset) and the state is intact.
func TestRestart(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.form()
	const enclave = "restart"
	all := c.client()
	noErr(t, all.CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave")
	noErr(t, all.CreateKey(ctxT(t, 10*time.Second), enclave, &kms.CreateKeyRequest{Name: "k"}), "create key")
	deks, err := all.GenerateKey(ctxT(t, 10*time.Second), enclave, &kms.GenerateKeyRequest{Name: "k"})
	noErr(t, err, "generate")
	admin := testnode.NewAPIKey(t)
	noErr(t, all.CreateIdentity(ctxT(t, 10*time.Second), enclave, &kms.CreateIdentityRequest{Identity: admin.Identity(), Privilege: kms.Admin}), "create admin")
	user := testnode.NewAPIKey(t)
	noErr(t, all.CreateIdentity(ctxT(t, 10*time.Second), enclave, &kms.CreateIdentityRequest{Identity: user.Identity(), Privilege: kms.User}), "create user")

	pids := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		pids[i] = n.PID()
	}
	ups := func() []int {
		var u []int
		for _, n := range c.nodes {
			u = append(u, n.Ups())
		}
		return u
	}
	checkIntact := func(phase string) {
		t.Helper()
		c.waitHealthy(c.others(), 15*time.Second)
		for i := range c.nodes {
			if err := c.readAll(i, enclave, "k", deks[0]); err != nil {
				t.Errorf("%s: node %d: %s", phase, i, testnode.DescribeErr(err))
			}
		}
		names, _ := createKeys(t, c.client(), enclave, phase, 1)
		for i := range c.nodes {
			c.wantKeys(t, i, enclave, names)
		}
	}

	t.Run("not SysAdmin", func(t *testing.T) {
		c := c.with(t)
		for _, who := range []struct {
			name string
			key  mtls.PrivateKey
		}{{"Admin", admin}, {"User", user}, {"unknown", testnode.NewAPIKey(t)}} {
			for _, q := range []string{"", "?self"} {
				status, err := c.postRestart(t, 0, who.key, q)
				if err != nil || status != http.StatusForbidden {
					t.Errorf("restart%s as %s: status %d, %v; want 403", q, who.name, status, err)
				}
			}
		}
		time.Sleep(time.Second)
		for i, u := range ups() {
			if u != 1 || c.nodes[i].PID() != pids[i] {
				t.Errorf("node %d restarted (banners %d, PID %d → %d) after a refused restart", i, u, pids[i], c.nodes[i].PID())
			}
		}
	})

	ok := t.Run("whole cluster", func(t *testing.T) {
		c := c.with(t)
		sent := time.Now()
		status, err := c.postRestart(t, c.lead(), c.root, "")
		t.Logf("POST /v1/debug/restart: status %d, %v, after %v", status, err, time.Since(sent).Round(time.Millisecond))
		if err == nil && status != http.StatusOK {
			t.Fatalf("POST /v1/debug/restart: status %d", status)
		}
		c.waitRestarted(t, sent, []int{2, 2, 2})
		for i, n := range c.nodes {
			if n.PID() != pids[i] {
				t.Errorf("node %d: PID %d after restart, was %d: the process must re-execute itself", i, n.PID(), pids[i])
			}
		}
		checkIntact("after-cluster-restart")
		vs, err := c.views(0)
		noErr(t, err, "status")
		for i, v := range vs {
			if v.uptime > time.Since(sent) {
				t.Errorf("node %d: uptime %v, but the restart was %v ago", i, v.uptime, time.Since(sent))
			}
		}
	})
	if !ok {
		return
	}

	t.Run("self", func(t *testing.T) {
		c := c.with(t)
		before := ups()
		sent := time.Now()
		status, err := c.postRestart(t, 1, c.root, "?self")
		t.Logf("POST /v1/debug/restart?self on node 1: status %d, %v", status, err)
		if err == nil && status != http.StatusOK {
			t.Fatalf("POST /v1/debug/restart?self: status %d", status)
		}
		if err := c.nodes[1].WaitUps(before[1]+1, 30*time.Second); err != nil {
			t.Fatalf("node 1 did not restart in place: %v", err)
		}
		time.Sleep(time.Second)
		after := ups()
		for i := range c.nodes {
			want := before[i]
			if i == 1 {
				want++
			}
			if after[i] != want {
				t.Errorf("node %d: %d banners after ?self on node 1, want %d", i, after[i], want)
			}
			if c.nodes[i].PID() != pids[i] {
				t.Errorf("node %d: PID changed", i)
			}
		}
		checkIntact("after-self-restart")
		vs, err := c.views(0)
		noErr(t, err, "status")
		if vs[1].uptime > time.Since(sent) {
			t.Errorf("node 1: uptime %v after ?self restart %v ago", vs[1].uptime, time.Since(sent))
		}
		for _, i := range []int{0, 2} {
			if vs[i].uptime < time.Since(sent) {
				t.Errorf("node %d: uptime %v, but only node 1 was restarted %v ago", i, vs[i].uptime, time.Since(sent))
			}
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		c := c.with(t)
		// Stopping a node (e.g. for a rolling upgrade) is quick, the
		// leader included: a graceful shutdown must not wait for peers'
		// long-lived connections.
		l := c.lead()
		for _, i := range []int{c.others(l)[0], l} {
			start := time.Now()
			c.nodes[i].Stop()
			took := time.Since(start)
			t.Logf("SIGTERM to node %d (leader: %v): exited after %v", i, i == l, took.Round(time.Millisecond))
			if took > 3*time.Second {
				t.Errorf("node %d (leader: %v) took %v to exit after SIGTERM, want < 3s", i, i == l, took.Round(time.Millisecond))
			}
			c.nodes[i].MustStart()
			c.waitHealthy(c.others(), 15*time.Second)
		}
		checkIntact("after-sigterm")
	})

	t.Run("keep restart", func(t *testing.T) {
		c := c.with(t)
		if !testnode.HasCommand(t, "restart") {
			t.Skip("keep has no restart command yet")
		}
		before := ups()
		// The guide warns of "connection reset" or "EOF" while the
		// servers restart: the exit code is logged, the restarts checked.
		sent := time.Now()
		r := testnode.CLI(t, []string{c.nodes[0].Endpoint()}, c.nodes[0].APIKey, "restart", "-k")
		t.Logf("keep restart: exit %d after %v, stdout %q, stderr %q", r.Code, time.Since(sent).Round(time.Millisecond), r.Stdout, r.Stderr)
		c.waitRestarted(t, sent, []int{before[0] + 1, before[1] + 1, before[2] + 1})
		checkIntact("after-cli-restart")
	})
}
