package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/kms-go/kes"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/test/promrules"
	"github.com/keep-kms/keep/test/testnode"
)

// The disk tests fill a node's data directory, or fail its fsyncs, and
// check what a client and an operator see: writes refused with 503 naming
// the node and the fault, on both APIs; reads served; one log record, not
// one a second; and writes taken again by the same process once the disk
// can be written, with every acknowledged write still there, also after a
// restart.

// faultRecord is the start of the node's log record of a disk fault.
const faultRecord = "the raft log cannot be written"

// policySize is about the size of one policy the tests write: large, so
// that the 16 MiB log segment fills in about sixteen writes.
const policySize = 1 << 20

// tmpfs mounts a tmpfs of size (as mount spells it: 40m) on a new
// directory and returns it; it is unmounted when the test ends. The test
// is skipped unless it runs as root (CI does).
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root): skipped")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill takes all but about leave bytes of the file system of dir with a
// file, and returns its path: deleting it frees the space.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize // #nosec G115 -- a tmpfs of a few MiB
	path := filepath.Join(dir, "ballast")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if free > leave {
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, free-leave); err != nil { // #nosec G115 -- a file descriptor
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
	return path
}

// policyRules is how many rules a big policy has: few and long, which
// Keep applies ten times faster than many short ones of the same size.
const policyRules = 64

// bigPolicy returns a policy of about policySize bytes.
func bigPolicy(name string) *kms.CreatePolicyRequest {
	rules := kms.RuleSet{}
	for i := range policyRules {
		rules[fmt.Sprintf("%s-%03d-%s", name, i, strings.Repeat("x", policySize/policyRules-16))] = kms.Rule{}
	}
	return &kms.CreatePolicyRequest{Name: name, Allow: map[cmds.Command]kms.RuleSet{cmds.KeyStatus: rules}}
}

// writePolicies writes up to count big policies through cl, until one
// fails, and returns the names of those acknowledged and the error that
// stopped it.
func writePolicies(cl *kms.Client, prefix string, count int) ([]string, error) {
	var acked []string
	for i := range count {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cl.CreatePolicy(ctx, "default", bigPolicy(name))
		cancel()
		if err != nil {
			return acked, err
		}
		acked = append(acked, name)
	}
	return acked, nil
}

// wantDiskFault checks the error of a write refused by node host: 503,
// saying what (disk full or disk error) and which node.
func wantDiskFault(t *testing.T, what string, err error, fault, host string) {
	t.Helper()
	if testnode.StatusOf(err) != 503 || !strings.Contains(err.Error(), fault) || !strings.Contains(err.Error(), "node "+host) {
		t.Fatalf("%s: %s, want 503 saying %q and naming node %s", what, testnode.DescribeErr(err), fault, host)
	}
}

// wantKESDiskFault is wantDiskFault for the KES API.
func wantKESDiskFault(t *testing.T, what string, err error, fault, host string) {
	t.Helper()
	var e kes.Error
	if !errors.As(err, &e) || e.Status() != 503 || !strings.Contains(e.Error(), fault) || !strings.Contains(e.Error(), "node "+host) {
		t.Fatalf("%s: %v, want 503 saying %q and naming node %s", what, err, fault, host)
	}
}

// wantPolicies checks that node cl serves every policy of names, whole.
func wantPolicies(t *testing.T, what string, cl *kms.Client, names []string) {
	t.Helper()
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ps, err := cl.GetPolicy(ctx, "default", &kms.PolicyRequest{Name: name})
		cancel()
		if err != nil {
			t.Fatalf("%s: acknowledged policy %s: %s", what, name, testnode.DescribeErr(err))
		}
		if got, want := len(ps[0].Allow[cmds.KeyStatus]), policyRules; got != want {
			t.Fatalf("%s: policy %s has %d rules, want %d", what, name, got, want)
		}
	}
}

// awaitWritable waits until a write through cl succeeds, and returns how
// long that took.
func awaitWritable(t *testing.T, what string, cl *kms.Client, name string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cl.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: name})
		cancel()
		if err == nil || errors.Is(err, kms.ErrKeyExists) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: no write taken within %v: %s", what, timeout, testnode.DescribeErr(err))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// wantOneFaultRecord checks that the node logged the fault once and that
// raft's own records of each refused append stayed out of the log.
func wantOneFaultRecord(t *testing.T, n *testnode.Node) {
	t.Helper()
	logs := n.Logs()
	if got := strings.Count(logs, faultRecord); got != 1 {
		t.Errorf("the node logged %q %d times, want once (at most once a minute)", faultRecord, got)
	}
	for _, raft := range []string{"failed to commit logs", "failed to append to logs", "rotate error"} {
		if got := strings.Count(logs, raft); got > 0 {
			t.Errorf("the node logged %q %d times, want never", raft, got)
		}
	}
}

// wantLogFault checks what keep_raft_log_fault of n reports, the series
// the alerts KeepDiskFull and KeepDiskError watch: full and failed are 1
// for the fault the node has, 0 otherwise.
func wantLogFault(t *testing.T, what string, n *testnode.Node, full, failed float64) {
	t.Helper()
	families := promrules.Scrape(t, testnode.HTTPClient(t, n.Root, 10*time.Second), n.Endpoint()+"/v1/health/metrics")
	for kind, want := range map[string]float64{"disk_full": full, "disk_error": failed} {
		if got, ok := promrules.Value(families, "keep_raft_log_fault", map[string]string{"kind": kind}); !ok || got != want {
			t.Errorf("%s: keep_raft_log_fault{kind=%q} = %v (present: %v), want %v", what, kind, got, ok, want)
		}
	}
}

// newDEK creates key k0 in the default enclave and returns a data key it
// generated.
func newDEK(t *testing.T, ctx context.Context, cl *kms.Client) *kms.GenerateKeyResponse {
	t.Helper()
	noErr(t, cl.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: "k0"}), "create k0")
	deks, err := cl.GenerateKey(ctx, "default", &kms.GenerateKeyRequest{Name: "k0", Length: 32})
	noErr(t, err, "generate with k0")
	return deks[0]
}

// wantDecrypt checks that cl decrypts dek, a data key of k0.
func wantDecrypt(t *testing.T, ctx context.Context, what string, cl *kms.Client, dek *kms.GenerateKeyResponse) {
	t.Helper()
	pt, err := cl.Decrypt(ctx, "default", &kms.DecryptRequest{Name: "k0", Ciphertext: dek.Ciphertext})
	noErr(t, err, "%s", what)
	if string(pt[0].Plaintext) != string(dek.Plaintext) {
		t.Fatalf("%s: wrong plaintext", what)
	}
}

// TestDiskFull fills the data directory of a one-node cluster, on a small
// tmpfs, until a write fails; checks the refusal on both APIs, the reads,
// and the log; frees the space; and checks that the same process takes
// writes again and holds every acknowledged write, also after a restart.
func TestDiskFull(t *testing.T) {
	dir := tmpfs(t, "40m")
	n := testnode.Start(t, testnode.Options{Name: "full", Dir: filepath.Join(dir, "data")})
	cl := n.RootClient(t)
	kc := n.KESClient(t, n.Root)
	ctx := ctxT(t, 50*time.Second)
	dek := newDEK(t, ctx, cl)

	// The log's first segment is allocated: leave less than the next one.
	ballast := fill(t, dir, 2<<20)
	acked, err := writePolicies(cl, "p", 200)
	if err == nil {
		t.Fatalf("200 policies of %d KiB written, and still no disk fault", policySize>>10)
	}
	t.Logf("%d policies of %d KiB acknowledged before the disk was full", len(acked), policySize>>10)
	wantDiskFault(t, "the write that filled the disk", err, "disk full", n.Host)
	pid := n.PID()

	// Refused on both APIs, at once and again after a while (no restart,
	// no election in between makes it another error); reads served.
	for round := range 3 {
		wantDiskFault(t, "create key k1", cl.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: "k1"}), "disk full", n.Host)
		wantKESDiskFault(t, "KES create key k1", kc.CreateKey(ctx, "k1"), "disk full", n.Host)
		wantDecrypt(t, ctx, "decrypt while the disk is full", cl, dek)
		if _, err := kc.DescribeKey(ctx, "k0"); err != nil {
			t.Fatalf("KES describe k0 while the disk is full: %v", err)
		}
		if round < 2 {
			time.Sleep(1500 * time.Millisecond)
		}
	}
	wantPolicies(t, "while the disk is full", cl, acked[len(acked)-3:])
	wantOneFaultRecord(t, n)
	wantLogFault(t, "while the disk is full", n, 1, 0)

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	took := awaitWritable(t, "after the space was freed", cl, "k1", 10*time.Second)
	t.Logf("writes taken again %v after the space was freed", took.Round(time.Millisecond))
	if n.PID() != pid || !n.Running() {
		t.Fatalf("the node restarted (pid %d, then %d) instead of recovering in place", pid, n.PID())
	}
	wantLogFault(t, "after the space was freed", n, 0, 0)
	more, err := writePolicies(cl, "q", 5)
	noErr(t, err, "write after recovery")
	acked = append(acked, more...)
	noErr(t, kc.CreateKey(ctx, "k2"), "KES create key k2 after recovery")
	wantPolicies(t, "after recovery", cl, acked)

	n.Restart()
	cl = n.RootClient(t)
	wantPolicies(t, "after a restart", cl, acked)
	for _, k := range []string{"k0", "k1", "k2"} {
		if _, err := cl.KeyStatus(ctx, "default", &kms.KeyStatusRequest{Name: k}); err != nil {
			t.Fatalf("key %s after a restart: %s", k, testnode.DescribeErr(err))
		}
	}
}

// writeThrough writes a big policy through cl and returns its name,
// trying again for up to 10 s while the cluster elects a leader (503): a
// node whose disk is full steps down when it led. It fails the test on any
// other error.
func writeThrough(t *testing.T, cl *kms.Client, prefix string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		acked, err := writePolicies(cl, prefix, 1)
		if err == nil {
			return acked[0]
		}
		if testnode.StatusOf(err) != 503 || time.Now().After(deadline) {
			t.Fatalf("write %s through the healthy nodes: %s", prefix, testnode.DescribeErr(err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDiskFullInCluster fills the disk of one node of a three-node
// cluster, a follower or the leader: the cluster goes on writing at full
// speed (after an election, if the full node led), the full node refuses
// writes (naming itself) and serves reads, and once space is freed it
// takes writes again and catches up, in the same process.
func TestDiskFullInCluster(t *testing.T) {
	for _, tt := range []struct {
		name string
		full int // the node on the tmpfs; node 0 leads once the cluster is formed
	}{
		{"follower", 2},
		{"leader", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := tmpfs(t, "40m")
			c := newCluster(t, 3, clusterOpts{dirs: map[int]string{tt.full: filepath.Join(dir, "data")}})
			c.form()
			if l := c.lead(); (l == tt.full) != (tt.name == "leader") {
				t.Fatalf("node %d leads, and the node on the tmpfs is %d: this test needs it to be the %s", l, tt.full, tt.name)
			}
			full := c.nodes[tt.full]
			pid := full.PID()
			all, viaFull := c.client(c.others(tt.full)...), c.client(tt.full)
			ctx := ctxT(t, 50*time.Second)
			dek := newDEK(t, ctx, all)

			ballast := fill(t, dir, 2<<20)
			// Write through the healthy nodes until the full one refuses:
			// every write must be acknowledged meanwhile.
			var acked []string
			for {
				if len(acked) >= 200 {
					t.Fatalf("200 policies of %d KiB written, and the full node still takes writes", policySize>>10)
				}
				acked = append(acked, writeThrough(t, all, fmt.Sprintf("p%d", len(acked))))
				err := viaFull.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: fmt.Sprintf("probe-%d", len(acked))})
				if err != nil {
					wantDiskFault(t, "write through the full node", err, "disk full", full.Host)
					break
				}
			}
			t.Logf("%d policies acknowledged before the disk was full", len(acked))

			// The cluster does not wait for the full node: once the leader
			// stops counting it (2 s without reports), a write takes what
			// it takes on a healthy cluster, not the 500 ms the leader
			// waits for a follower that reports but does not apply.
			time.Sleep(2500 * time.Millisecond)
			if l := c.lead(); l == tt.full {
				t.Fatalf("the full node %d leads", l)
			}
			var slow []time.Duration
			for i := range 10 {
				start := time.Now()
				noErr(t, all.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: fmt.Sprintf("fast-%d", i)}), "write while a node is full")
				if d := time.Since(start); d > 300*time.Millisecond {
					slow = append(slow, d)
				}
			}
			if len(slow) > 2 {
				t.Errorf("%d of 10 writes took over 300 ms while a node was full: %v", len(slow), slow)
			}
			// Served at once: it waits for no lease, which would not come.
			start := time.Now()
			wantDecrypt(t, ctx, "decrypt on the full node", viaFull, dek)
			if d := time.Since(start); d > 150*time.Millisecond {
				t.Errorf("a read on the full node took %v", d)
			}
			wantDiskFault(t, "write through the full node", viaFull.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: "refused"}), "disk full", full.Host)
			wantOneFaultRecord(t, full)

			if err := os.Remove(ballast); err != nil {
				t.Fatal(err)
			}
			took := awaitWritable(t, "the full node, after the space was freed", viaFull, "k1", 20*time.Second)
			t.Logf("the full node took writes again %v after the space was freed", took.Round(time.Millisecond))
			c.waitHealthy([]int{0, 1, 2}, 20*time.Second)
			if full.PID() != pid || !full.Running() {
				t.Fatalf("the full node restarted (pid %d, then %d) instead of recovering in place", pid, full.PID())
			}
			wantPolicies(t, "on the full node after it caught up", viaFull, acked)
			for i := range 10 {
				if _, err := viaFull.KeyStatus(ctx, "default", &kms.KeyStatusRequest{Name: fmt.Sprintf("fast-%d", i)}); err != nil {
					t.Fatalf("key fast-%d on the full node after it caught up: %s", i, testnode.DescribeErr(err))
				}
			}
		})
	}
}

// failFsync makes every fsync(2) of process pid fail with EIO, with
// strace's fault injection (the test is skipped without strace; CI installs
// it), until the returned function is called. strace attaches in the
// background: fsyncs may succeed for a moment after it returns.
func failFsync(t *testing.T, pid int) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not found: it injects the fsync errors of this test (CI installs it)")
	}
	cmd := exec.Command(bin, "-f", "-qq", "-e", "trace=fsync", "-e", "inject=fsync:error=EIO", "-o", os.DevNull, "-p", fmt.Sprint(pid))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(os.Interrupt) // strace detaches, and fsync works again
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("strace did not detach from %d within 10s: %s", pid, out.String())
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestFsyncFails makes every fsync of a node fail with EIO (strace's fault
// injection on the running process), and checks that writes are refused
// with 503 naming the node and the disk error, on both APIs, reads
// served, one log record, and writes taken again by the same process once
// fsync works, with every acknowledged write there and the refused one
// not, also after a restart.
func TestFsyncFails(t *testing.T) {
	n := testnode.Start(t, testnode.Options{Name: "fsync"})
	cl := n.RootClient(t)
	kc := n.KESClient(t, n.Root)
	ctx := ctxT(t, 50*time.Second)
	var acked []string
	for i := range 20 {
		name := fmt.Sprintf("before-%d", i)
		noErr(t, cl.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: name}), "create %s", name)
		acked = append(acked, name)
	}
	pid := n.PID()
	stop := failFsync(t, pid)
	// strace attaches in the background: writes succeed until it has.
	var err error
	for i := 0; ; i++ {
		name := fmt.Sprintf("attaching-%d", i)
		if err = cl.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: name}); err != nil {
			break
		}
		acked = append(acked, name)
		if i == 100 {
			t.Fatal("100 writes taken after strace was told to fail every fsync")
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantDiskFault(t, "the write whose fsync failed", err, "disk error", n.Host)
	for round := range 3 {
		err := cl.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: "during"})
		wantDiskFault(t, "create a key while fsync fails", err, "disk error", n.Host)
		if !strings.Contains(err.Error(), "input/output error") {
			t.Fatalf("create a key while fsync fails: %s, want it to say input/output error", testnode.DescribeErr(err))
		}
		wantKESDiskFault(t, "KES create a key while fsync fails", kc.CreateKey(ctx, "during"), "disk error", n.Host)
		for _, name := range acked {
			if _, err := cl.KeyStatus(ctx, "default", &kms.KeyStatusRequest{Name: name}); err != nil {
				t.Fatalf("key %s while fsync fails: %s", name, testnode.DescribeErr(err))
			}
		}
		if round < 2 {
			time.Sleep(1500 * time.Millisecond)
		}
	}
	wantOneFaultRecord(t, n)
	wantLogFault(t, "while fsync fails", n, 0, 1)

	stop()
	took := awaitWritable(t, "after fsync works again", cl, "after-0", 10*time.Second)
	t.Logf("writes taken again %v after fsync worked again", took.Round(time.Millisecond))
	if n.PID() != pid || !n.Running() {
		t.Fatalf("the node restarted (pid %d, then %d) instead of recovering in place", pid, n.PID())
	}
	acked = append(acked, "after-0")
	wantLogFault(t, "after fsync works again", n, 0, 0)
	for i := 1; i < 20; i++ {
		name := fmt.Sprintf("after-%d", i)
		noErr(t, cl.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: name}), "create %s", name)
		acked = append(acked, name)
	}
	wantKeys := func(what string) {
		t.Helper()
		for _, name := range acked {
			if _, err := cl.KeyStatus(ctx, "default", &kms.KeyStatusRequest{Name: name}); err != nil {
				t.Fatalf("%s: key %s: %s", what, name, testnode.DescribeErr(err))
			}
		}
		// Refused while fsync failed, so not taken.
		if _, err := cl.KeyStatus(ctx, "default", &kms.KeyStatusRequest{Name: "during"}); !errors.Is(err, kms.ErrKeyNotFound) {
			t.Fatalf("%s: key during, refused while fsync failed: %s, want it not to exist", what, testnode.DescribeErr(err))
		}
	}
	wantKeys("after recovery")
	n.Restart()
	cl = n.RootClient(t)
	wantKeys("after a restart")
}
