package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kes"
	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// lifeEnclave is the enclave of TestKeyLifecycle's keys.
const lifeEnclave = "life"

// keyInfo asks node i for the KeyInfo of key name.
func (c *cluster) keyInfo(i int, name string) (*testnode.KeyInfo, error) {
	ctx, cancel := ctxD(10 * time.Second)
	defer cancel()
	return testnode.GetKeyInfo(ctx, testnode.HTTPClient(c.t, c.root, 10*time.Second), c.nodes[i].Endpoint(), lifeEnclave, name)
}

// lifeCLI runs a keep key command in lifeEnclave through nodes, as root.
func (c *cluster) lifeCLI(nodes []int, args ...string) string {
	c.t.Helper()
	return c.cli(c.nodes[0].APIKey, nodes, append(args, "-e", lifeEnclave)...).Stdout
}

// eventually polls check every 100 ms on each node in nodes until it
// returns "" on all of them, and fails the test with the last complaint if
// that takes longer than timeout.
func (c *cluster) eventually(what string, nodes []int, timeout time.Duration, check func(i int) string) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var complaints []string
		for _, i := range nodes {
			if msg := check(i); msg != "" {
				complaints = append(complaints, fmt.Sprintf("node %d: %s", i, msg))
			}
		}
		if len(complaints) == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %v: %s", what, timeout, strings.Join(complaints, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// decryptErr decrypts dek's ciphertext on node i and returns the error,
// or one saying that it decrypted to something else.
func (c *cluster) decryptErr(i int, name string, dek *kms.GenerateKeyResponse) error {
	ctx, cancel := ctxD(10 * time.Second)
	defer cancel()
	r, err := c.client(i).Decrypt(ctx, lifeEnclave, &kms.DecryptRequest{Name: name, Version: dek.Version, Ciphertext: dek.Ciphertext})
	if err == nil && !bytes.Equal(r[0].Plaintext, dek.Plaintext) {
		return fmt.Errorf("decrypts to another plaintext")
	}
	return err
}

// generateErr generates a data key with the latest version of key name on
// node i.
func (c *cluster) generateErr(i int, name string) error {
	ctx, cancel := ctxD(10 * time.Second)
	defer cancel()
	_, err := c.client(i).GenerateKey(ctx, lifeEnclave, &kms.GenerateKeyRequest{Name: name})
	return err
}

// dek generates a data key with version v of key name.
func (c *cluster) dek(name string, v int) *kms.GenerateKeyResponse {
	c.t.Helper()
	r, err := c.client().GenerateKey(ctx10(c.t), lifeEnclave, &kms.GenerateKeyRequest{Name: name, Version: v})
	noErr(c.t, err, "generate with version %d of %s", v, name)
	return r[0]
}

// kesRefuses returns "" if err is a KES API error with status 409 and
// every part in its message, else what err is.
func kesRefuses(err error, parts ...string) string {
	var e kes.Error
	if !errors.As(err, &e) || e.Status() != http.StatusConflict {
		return fmt.Sprintf("got %T %v, want a KES API 409", err, err)
	}
	for _, p := range parts {
		if !strings.Contains(e.Error(), p) {
			return fmt.Sprintf("KES API error %q does not contain %q", e.Error(), p)
		}
	}
	return ""
}

func ctx10(t *testing.T) context.Context { return ctxT(t, 10*time.Second) }

// refuses returns "" if err is the 409 with every part in its message,
// else what err is.
func refuses(err error, parts ...string) string {
	if testnode.StatusOf(err) != http.StatusConflict {
		return "got " + testnode.DescribeErr(err) + ", want 409"
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			return fmt.Sprintf("error %s does not contain %q", testnode.DescribeErr(err), p)
		}
	}
	return ""
}

// errText returns "" for nil, else the error described.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return testnode.DescribeErr(err)
}

// lifeAudit returns the audit records with command cmd about key name in
// the stdout (audit.sink: stdout) of node i, across its restarts.
func (c *cluster) lifeAudit(i int, cmd, name string) []string {
	var found []string
	for _, line := range strings.Split(c.nodes[i].Stdout(), "\n") {
		var e struct {
			Command  string `json:"command"`
			Enclave  string `json:"enclave"`
			Resource string `json:"resource"`
		}
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		if e.Command == cmd && e.Enclave == lifeEnclave && (e.Resource == name || strings.HasPrefix(e.Resource, name+"/")) {
			found = append(found, line)
		}
	}
	return found
}

// auditCount counts the audit records with command cmd about key name on
// every node (of the nodes' current processes).
func (c *cluster) auditCount(cmd, name string) int {
	n := 0
	for i := range c.nodes {
		n += len(c.lifeAudit(i, cmd, name))
	}
	return n
}

// restart starts node i again if it is not running, and waits until the
// cluster is healthy.
func (c *cluster) restart(i int) {
	c.t.Helper()
	if c.nodes[i].Running() {
		return
	}
	noErr(c.t, c.nodes[i].Start(), "restart node %d", i)
	c.waitHealthy(allIdx(len(c.nodes)), 30*time.Second)
}

// TestKeyLifecycle runs the key lifecycle on a 3-node cluster and checks
// every node: scheduled deletion destroys the material once, also when the
// leader is killed the moment it is due; cancelling restores; disabled
// keys refuse and recover; rotation happens once per period across a
// leader kill; the leader audits destruction and rotation.
func TestKeyLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	c := newCluster(t, 3, clusterOpts{config: "version: v1\naudit:\n  sink: stdout\nkes:\n  enclave: " + lifeEnclave + "\n"})
	c.form()
	all := allIdx(3)
	noErr(t, c.client().CreateEnclave(ctx10(t), &kms.CreateEnclaveRequest{Name: lifeEnclave}), "create enclave")

	t.Run("scheduled deletion", func(t *testing.T) {
		c := c.with(t)
		// The window of the cluster setting: rm-key without --window.
		c.cli(c.nodes[0].APIKey, all, "config", "set", "keys.deletion_window=3s")
		defer c.cli(c.nodes[0].APIKey, all, "config", "set", "keys.deletion_window=")
		c.lifeCLI(all, "add-key", "del")
		c.lifeCLI(all, "add-key", "del", "--version")
		c.lifeCLI(all, "add-key", "gone")
		old, current, gone := c.dek("del", 1), c.dek("del", 2), c.dek("gone", 0)

		scheduled := time.Now()
		out := c.lifeCLI([]int{1}, "rm-key", "del", "-v", "1")
		if !strings.Contains(out, "version 1 of key del is destroyed at") || !strings.Contains(out, "keep cancel-rm-key del -v 1 -e life") {
			t.Errorf("keep rm-key del -v 1: %q", out)
		}
		c.lifeCLI([]int{2}, "rm-key", "gone", "--all", "--yes")
		c.eventually("version 1 pending deletion, version 2 active", all, 10*time.Second, func(i int) string {
			k, err := c.keyInfo(i, "del")
			switch {
			case err != nil:
				return testnode.DescribeErr(err)
			case k.States() != "1:pending-deletion 2:active":
				return "states " + k.States()
			case k.Version(1).DeleteAt == nil || k.Version(1).DeleteAt.Before(scheduled.Add(2*time.Second)) || k.Version(1).DeleteAt.After(scheduled.Add(10*time.Second)):
				return fmt.Sprintf("delete_at %v, scheduled at %v with a 3s window", k.Version(1).DeleteAt, scheduled)
			}
			return ""
		})
		// Until delete_at, version 1 refuses with the error that says
		// when it goes and how to cancel; a run slow enough to get here
		// later has that checked by the cancel subtest (window 1h).
		k, err := c.keyInfo(1, "del")
		noErr(t, err, "KeyInfo of del")
		err = c.decryptErr(1, "del", old)
		if v1 := k.Version(1); v1 != nil && v1.DeleteAt != nil && time.Now().Before(*v1.DeleteAt) {
			if msg := refuses(err, "key is pending deletion: version 1 of key del is destroyed at "+k.Version(1).DeleteAt.UTC().Format(time.RFC3339), "keep cancel-rm-key del -v 1"); msg != "" {
				t.Errorf("decrypt with version 1 while it is pending deletion: %s", msg)
			}
		} else {
			t.Logf("version 1 of del was due before it could be decrypted: %s", testnode.DescribeErr(err))
		}
		c.eventually("version 1 of del and key gone destroyed", all, 30*time.Second, func(i int) string {
			k, err := c.keyInfo(i, "del")
			if err != nil {
				return testnode.DescribeErr(err)
			}
			if k.States() != "2:active" {
				return "del: states " + k.States()
			}
			// A version gone from a key that is still there: the
			// ciphertext cannot be decrypted any more (400), as before
			// scheduled deletion.
			if err := c.decryptErr(i, "del", old); testnode.StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "invalid ciphertext") {
				return "decrypt with version 1 of del: got " + testnode.DescribeErr(err) + ", want 400 invalid ciphertext"
			}
			if err := c.decryptErr(i, "del", current); err != nil {
				return "decrypt with version 2 of del: " + testnode.DescribeErr(err)
			}
			if _, err := c.keyInfo(i, "gone"); !errors.Is(err, kms.ErrKeyNotFound) {
				return "KeyInfo of gone: " + testnode.DescribeErr(err) + ", want key not found"
			}
			if err := c.decryptErr(i, "gone", gone); !errors.Is(err, kms.ErrKeyNotFound) {
				return "decrypt with gone: " + testnode.DescribeErr(err) + ", want key not found"
			}
			return ""
		})
		// The leader destroyed each, once.
		leader := c.lead()
		for _, name := range []string{"del", "gone"} {
			if recs := c.lifeAudit(leader, "KEY:DESTROY", name); len(recs) != 1 {
				t.Errorf("leader (node %d) audited %d KEY:DESTROY of %s, want 1: %q", leader, len(recs), name, recs)
			}
			if n := c.auditCount("KEY:DESTROY", name); n != 1 {
				t.Errorf("%d KEY:DESTROY records of %s on all nodes, want 1", n, name)
			}
		}
	})

	t.Run("cancel", func(t *testing.T) {
		c := c.with(t)
		c.lifeCLI(all, "add-key", "can")
		dek := c.dek("can", 0)
		out := c.lifeCLI([]int{2}, "rm-key", "can", "--yes", "--window", "1h")
		if !strings.Contains(out, "version 1 of key can is destroyed at") || !strings.Contains(out, "(in 59m)") {
			t.Errorf("keep rm-key can --yes --window 1h: %q", out)
		}
		c.eventually("generate and decrypt refused while pending", all, 10*time.Second, func(i int) string {
			if msg := refuses(c.generateErr(i, "can"), "key is pending deletion: version 1 of key can is destroyed at"); msg != "" {
				return "generate: " + msg
			}
			return refuses(c.decryptErr(i, "can", dek), "key is pending deletion", "keep cancel-rm-key can -v 1")
		})
		if out := c.lifeCLI([]int{0}, "cancel-rm-key", "can"); out != "version 1 of key can is active\n" {
			t.Errorf("keep cancel-rm-key can: %q", out)
		}
		c.eventually("restored", all, 10*time.Second, func(i int) string {
			if k, err := c.keyInfo(i, "can"); err != nil || k.States() != "1:active" || k.Version(1).DeleteAt != nil {
				return fmt.Sprintf("KeyInfo %+v, %s", k, errText(err))
			}
			if err := c.generateErr(i, "can"); err != nil {
				return "generate: " + testnode.DescribeErr(err)
			}
			return errText(c.decryptErr(i, "can", dek))
		})
	})

	t.Run("KES delete", func(t *testing.T) {
		c := c.with(t)
		c.lifeCLI(all, "add-key", "kesdel")
		deleted := time.Now()
		kc := c.nodes[1].KESClient(t, c.root)
		if err := kc.DeleteKey(ctx10(t), "kesdel"); err != nil {
			t.Fatalf("KES DeleteKey: %v", err)
		}
		// The cluster's window, 7 days by default: pending, not gone.
		k, err := c.keyInfo(2, "kesdel")
		noErr(t, err, "KeyInfo of kesdel after the KES delete")
		if v := k.Version(1); k.States() != "1:pending-deletion" || v.DeleteAt.Before(deleted.Add(7*24*time.Hour-time.Minute)) || v.DeleteAt.After(deleted.Add(7*24*time.Hour+time.Minute)) {
			t.Errorf("after the KES delete: %s, delete_at %v; want pending deletion 7 days after %v", k.States(), v.DeleteAt, deleted)
		}
		_, err = kc.GenerateKey(ctx10(t), "kesdel", nil)
		if msg := kesRefuses(err, "key is pending deletion: version 1 of key kesdel is destroyed at", "keep cancel-rm-key kesdel -v 1"); msg != "" {
			t.Errorf("KES generate while pending deletion: %s", msg)
		}
		c.lifeCLI(all, "cancel-rm-key", "kesdel")
		if _, err := kc.GenerateKey(ctx10(t), "kesdel", nil); err != nil {
			t.Errorf("KES generate after cancel-rm-key: %v", err)
		}
	})

	t.Run("leader killed when due", func(t *testing.T) {
		c := c.with(t)
		c.lifeCLI(all, "add-key", "kill")
		c.lifeCLI(all, "add-key", "kill", "--version")
		old, current := c.dek("kill", 1), c.dek("kill", 2)
		c.lifeCLI(all, "rm-key", "kill", "-v", "1", "--window", "4s")
		k, err := c.keyInfo(0, "kill")
		noErr(t, err, "KeyInfo of kill")
		if k.Version(1) == nil || k.Version(1).DeleteAt == nil {
			t.Fatalf("version 1 of kill not pending deletion: %+v", k)
		}
		leader := c.lead()
		defer c.restart(leader)
		time.Sleep(time.Until(*k.Version(1).DeleteAt))
		c.nodes[leader].Kill()
		t.Logf("killed the leader, node %d, at %s (delete_at %s)", leader, time.Now().Format("15:04:05.000"), k.Version(1).DeleteAt.Format("15:04:05.000"))
		others := c.others(leader)
		c.waitLeader(others[0], others, 20*time.Second)
		destroyed := func(i int) string {
			k, err := c.keyInfo(i, "kill")
			if err != nil {
				return testnode.DescribeErr(err)
			}
			if k.States() != "2:active" {
				return "states " + k.States()
			}
			if err := c.decryptErr(i, "kill", old); testnode.StatusOf(err) != http.StatusBadRequest {
				return "decrypt with version 1: got " + testnode.DescribeErr(err) + ", want 400 invalid ciphertext"
			}
			return errText(c.decryptErr(i, "kill", current))
		}
		c.eventually("version 1 destroyed by the new leader", others, 30*time.Second, destroyed)
		c.restart(leader)
		c.eventually("version 1 destroyed on every node", all, 30*time.Second, destroyed)
		// Once, or not at all if the old leader applied it and was killed
		// before it wrote the record: the new leader's attempt is refused.
		if n := c.auditCount("KEY:DESTROY", "kill"); n > 1 {
			t.Errorf("%d KEY:DESTROY records of kill on all nodes, want at most 1", n)
		}
	})

	t.Run("disable and enable", func(t *testing.T) {
		c := c.with(t)
		c.lifeCLI(all, "add-key", "dis")
		dek := c.dek("dis", 0)
		if out := c.lifeCLI([]int{1}, "disable-key", "dis", "--force"); out != "version 1 of key dis is disabled; enable it with 'keep enable-key dis -v 1 -e life'\n" {
			t.Errorf("keep disable-key dis: %q", out)
		}
		const disabled = "key is disabled: version 1 of key dis is disabled; enable it with 'keep enable-key dis -v 1'"
		c.eventually("disabled", all, 10*time.Second, func(i int) string {
			if k, err := c.keyInfo(i, "dis"); err != nil || k.States() != "1:disabled" {
				return fmt.Sprintf("KeyInfo %+v, %s", k, errText(err))
			}
			if msg := refuses(c.generateErr(i, "dis"), disabled); msg != "" {
				return "generate: " + msg
			}
			_, err := c.nodes[i].KESClient(t, c.root).GenerateKey(ctx10(t), "dis", nil)
			if msg := kesRefuses(err, disabled); msg != "" {
				return "KES generate: " + msg
			}
			return refuses(c.decryptErr(i, "dis", dek), disabled)
		})
		if out := c.lifeCLI([]int{2}, "stat-key", "dis"); !regexpMatch(`(?m)^State\s+disabled$`, out) || !regexpMatch(`(?m)^1\s+AES256\s+disabled\s`, out) {
			t.Errorf("keep stat-key dis:\n%s", out)
		}
		if out := c.lifeCLI([]int{0}, "ls-key", "dis"); !regexpMatch(`(?m)^dis\s+1\s+AES256\s+.*\sdisabled$`, out) {
			t.Errorf("keep ls-key dis:\n%s", out)
		}
		c.lifeCLI([]int{0}, "enable-key", "dis")
		c.eventually("enabled", all, 10*time.Second, func(i int) string {
			if k, err := c.keyInfo(i, "dis"); err != nil || k.States() != "1:active" {
				return fmt.Sprintf("KeyInfo %+v, %s", k, errText(err))
			}
			if err := c.generateErr(i, "dis"); err != nil {
				return "generate: " + testnode.DescribeErr(err)
			}
			return errText(c.decryptErr(i, "dis", dek))
		})
	})

	t.Run("rotation across a leader kill", func(t *testing.T) {
		c := c.with(t)
		const period = 3 * time.Second
		c.lifeCLI(all, "add-key", "rot", "--rotate", "3s")
		// A key whose latest version is disabled is not rotated.
		c.lifeCLI(all, "add-key", "rotoff", "--rotate", "2s")
		c.lifeCLI(all, "disable-key", "rotoff", "--force")
		start := time.Now()

		// Watch the versions of rot, through whichever node answers,
		// while the leader is killed after two periods.
		var killed bool
		leader := c.lead()
		defer c.restart(leader)
		for time.Since(start) < 5*period {
			if !killed && time.Since(start) > 2*period {
				c.nodes[leader].Kill()
				killed = true
				t.Logf("killed the leader, node %d, at +%v", leader, time.Since(start).Round(time.Millisecond))
			}
			time.Sleep(200 * time.Millisecond)
		}
		others := c.others(leader)
		k, err := c.keyInfo(others[0], "rot")
		noErr(t, err, "KeyInfo of rot")
		elapsed := time.Since(start)
		n := len(k.Versions)
		t.Logf("rot after %v (period %v, leader killed): %s", elapsed.Round(time.Millisecond), period, k.States())
		// At most one rotation per period; at least two in five periods,
		// even with an election in between.
		if maxN := 1 + int(elapsed/period); n > maxN || n < 3 {
			t.Errorf("rot has %d versions after %v with a period of %v: want 3 to %d", n, elapsed, period, maxN)
		}
		for i := 1; i < len(k.Versions); i++ {
			prev, cur := k.Versions[i-1], k.Versions[i]
			if gap := cur.CreatedAt.Sub(prev.CreatedAt); gap < period*9/10 {
				t.Errorf("versions %d and %d of rot were created %v apart, within one period of %v", prev.Version, cur.Version, gap, period)
			}
		}
		if k.RotateEvery == "" || k.NextRotation == nil {
			t.Errorf("rot: rotate_every %q, next_rotation %v", k.RotateEvery, k.NextRotation)
		}
		// One record per rotation; one may be missing if the killed
		// leader applied a rotation before it could write the record.
		if recs := c.auditCount("KEY:ROTATE", "rot"); recs > n-1 || recs < n-2 {
			t.Errorf("%d KEY:ROTATE records of rot, for %d rotations", recs, n-1)
		}
		if off, err := c.keyInfo(others[0], "rotoff"); err != nil || off.States() != "1:disabled" {
			t.Errorf("rotoff, disabled, with a period of 2s: %+v, %s", off, errText(err))
		}

		c.restart(leader)
		// --every 0 stops it.
		if out := c.lifeCLI(all, "rotate-key", "rot", "--every", "0"); out != "key rot is not rotated automatically\n" {
			t.Errorf("keep rotate-key rot --every 0: %q", out)
		}
		k, err = c.keyInfo(0, "rot")
		noErr(t, err, "KeyInfo of rot")
		time.Sleep(2 * period)
		after, err := c.keyInfo(0, "rot")
		noErr(t, err, "KeyInfo of rot")
		if len(after.Versions) != len(k.Versions) {
			t.Errorf("rot rotated after --every 0: %s, then %s", k.States(), after.States())
		}
	})
}

// regexpMatch reports whether s matches the regular expression re.
func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
