package e2e

import (
	"errors"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keep-kms/keep/test/testnode"
)

// softHSMs are two soft HSMs, soft-a and soft-b, for nodes configured
// with a config file: their keys (from keep --soft-hsm) are in the
// environment env, as KEEP_TEST_HSM_A and KEEP_TEST_HSM_B.
type softHSMs struct {
	keyA, keyB string
	env        []string
	// config returns a new config file listing the named HSMs, in order,
	// after the YAML in extra.
	config func(names ...string) string
}

func newSoftHSMs(t *testing.T, extra string) softHSMs {
	h := softHSMs{
		keyA: strings.TrimSpace(cliOK(t, nil, "--soft-hsm")),
		keyB: strings.TrimSpace(cliOK(t, nil, "--soft-hsm")),
	}
	h.env = []string{"KEEP_TEST_HSM_A=" + h.keyA, "KEEP_TEST_HSM_B=" + h.keyB}
	h.config = func(names ...string) string {
		yaml := "version: v1\n" + extra + "hsm:\n"
		for _, name := range names {
			env := "KEEP_TEST_HSM_" + strings.ToUpper(strings.TrimPrefix(name, "soft-"))
			yaml += "  - name: " + name + "\n    soft:\n      key_env: " + env + "\n"
		}
		return writeConfigFile(t, yaml)
	}
	return h
}

// TestHSMCLI drives the HSMs of a node with keep add-hsm, rm-hsm and stat:
// a node configured with two soft HSMs, sealed by both at bootstrap, drops
// the second one's seal; it then starts with the first alone, and no longer
// with the second alone.
func TestHSMCLI(t *testing.T) {
	t.Parallel()
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	h := newSoftHSMs(t, "audit:\n  sink: "+auditFile+"\n")
	keyA, keyB := h.keyA, h.keyB
	config := h.config
	n := testnode.Start(t, testnode.Options{HSMKey: "-", Config: config("soft-a", "soft-b"), ExtraEnv: h.env})
	if rootA, err := testnode.HSMRootAPIKey(keyA); err != nil || n.APIKey != rootA {
		t.Fatalf("banner API key %s, want the root API key of soft-a, the node's first HSM (%s, %v)", n.APIKey, rootA, err)
	}
	env := cliEnv(n)

	// stat checks what keep stat says of the node's HSMs, as text and
	// JSON.
	stat := func(sealedBy, configured []string) {
		t.Helper()
		out := cliOK(t, env, "stat", "-k")
		for _, line := range []string{
			"  HSM       soft-a (configured: " + strings.Join(configured, ", ") + ")\n",
			"  Sealed by " + strings.Join(sealedBy, ", ") + "\n",
		} {
			if !strings.Contains(out, line) {
				t.Errorf("keep stat does not show %q:\n%s", line, out)
			}
		}
		var v struct {
			Nodes []struct {
				HSM          []string `json:"hsm"`
				HSMActive    []string `json:"hsm_active"`
				UnsealedWith string   `json:"unsealed_with"`
			} `json:"nodes"`
		}
		cliJSON(t, env, &v, "stat", "-k")
		if len(v.Nodes) != 1 {
			t.Fatalf("keep stat --json: %d nodes, want 1", len(v.Nodes))
		}
		if got := v.Nodes[0]; got.UnsealedWith != "soft-a" || !slices.Equal(got.HSM, sealedBy) || !slices.Equal(got.HSMActive, configured) {
			t.Errorf("keep stat --json: %+v; want unsealed_with soft-a, hsm %v, hsm_active %v", got, sealedBy, configured)
		}
	}
	stat([]string{"soft-a", "soft-b"}, []string{"soft-a", "soft-b"})

	// Every configured HSM sealed the root key at bootstrap.
	cliFails(t, env, 1, []string{"keep: HSM already seals the root key: soft-b"}, "add-hsm", "soft-b", "-k")
	if out := cliOK(t, env, "add-hsm", "soft-b", "--overwrite", "-k"); out != "HSM soft-b has sealed the cluster's root key anew, replacing any seal it had\n" {
		t.Errorf("keep add-hsm --overwrite: %q", out)
	}
	// soft-b's new seal unseals: the node starts with soft-b alone, and
	// soft-a's root API key, soft-a still sealing, stays SysAdmin.
	// Restarts print no API key, which testnode would derive from
	// MINIO_KMS_HSM_KEY, unset here: n keeps soft-a's (NoAPIKey).
	n.Stop()
	n.Config, n.NoAPIKey = config("soft-b"), true
	n.MustStart()
	if out := cliOK(t, env, "stat", "-k"); !strings.Contains(out, "  HSM       soft-b (configured: soft-b)\n") {
		t.Errorf("keep stat of the node on soft-b alone:\n%s", out)
	}
	n.Stop()
	n.Config = config("soft-a", "soft-b")
	n.MustStart()
	cliFails(t, env, 1, []string{"keep: HSM is not configured on this node: soft-c", "soft-a, soft-b"}, "add-hsm", "soft-c", "-k")
	cliFails(t, env, 1, []string{"keep: HSM does not seal the root key: nope", "soft-a, soft-b"}, "rm-hsm", "nope", "-k")
	cliFails(t, env, 1, []string{"keep: HSM is in use", "uses soft-a"}, "rm-hsm", "soft-a", "-k")
	// soft-b's root API key is SysAdmin while soft-b seals the root key,
	// and no longer once its seal is gone.
	rootB, err := testnode.HSMRootAPIKey(keyB)
	noErr(t, err, "root API key of soft-b")
	envB := []string{"MINIO_KMS_SERVER=" + n.Endpoint(), "MINIO_KMS_API_KEY=" + rootB}
	cliOK(t, envB, "ls", "-k")
	if out := cliOK(t, env, "rm-hsm", "soft-b", "-k"); out != "Removed HSM soft-b: it no longer seals the cluster's root key\n" {
		t.Errorf("keep rm-hsm: %q", out)
	}
	cliFails(t, envB, 1, []string{"keep: access denied"}, "ls", "-k")
	cliFails(t, env, 1, []string{"keep: HSM does not seal the root key: soft-b"}, "rm-hsm", "soft-b", "-k")
	stat([]string{"soft-a"}, []string{"soft-a", "soft-b"})

	// The audit log has a record of each request, refused or not.
	type record struct {
		command, resource string
		status            int
	}
	var got []record
	for _, e := range readAudit(t, auditFile) {
		if strings.HasPrefix(e.Command, "CLUSTER:") && strings.HasSuffix(e.Command, "HSM") {
			if e.Identity != n.Root.Identity().String() {
				t.Errorf("audit record %+v: identity %s, want the root API key's", e, e.Identity)
			}
			got = append(got, record{e.Command, e.Resource, e.Status})
		}
	}
	want := []record{
		{"CLUSTER:ADDHSM", "soft-b", http.StatusConflict},
		{"CLUSTER:ADDHSM", "soft-b", http.StatusOK},
		{"CLUSTER:ADDHSM", "soft-c", http.StatusNotFound},
		{"CLUSTER:REMOVEHSM", "nope", http.StatusNotFound},
		{"CLUSTER:REMOVEHSM", "soft-a", http.StatusConflict},
		{"CLUSTER:REMOVEHSM", "soft-b", http.StatusOK},
		{"CLUSTER:REMOVEHSM", "soft-b", http.StatusNotFound},
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit records of the HSM commands:\n%v\nwant\n%v", got, want)
	}

	// The node starts with the remaining HSM alone.
	n.Stop()
	n.Config = config("soft-a")
	n.MustStart()
	stat([]string{"soft-a"}, []string{"soft-a"})

	// With the removed HSM alone it does not start, says why in one line,
	// and leaves its data alone.
	n.Stop()
	before := hashDir(t, n.Dir)
	n.Config = config("soft-b")
	err = n.Start()
	var se *testnode.StartError
	if !errors.As(err, &se) || se.Timeout || se.Code == 0 {
		t.Fatalf("start with the removed HSM alone: %v, want a non-zero exit", err)
	}
	msg := strings.TrimSpace(se.Stderr)
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "the cluster's HSMs are soft-a, this node's are soft-b") {
		t.Errorf("start with the removed HSM alone: stderr %q, want one line naming soft-a as the cluster's HSM and soft-b as the node's", se.Stderr)
	}
	for _, key := range []string{keyA, keyB} {
		if strings.Contains(se.Stderr+se.Stdout, strings.TrimPrefix(key, "hsm:aes256:")) {
			t.Errorf("start with the removed HSM alone: the output holds an HSM key")
		}
	}
	if after := hashDir(t, n.Dir); !maps.Equal(before, after) {
		t.Errorf("a failed start changed the data directory")
	}
}

// hsmPair is a cluster of two nodes, n0 configured with soft-a and n1 with
// soft-a and soft-b, whose root key soft-b seals too: keep add-hsm reached
// n1, the one node configured with soft-b, through --host.
type hsmPair struct {
	n0, n1 *testnode.Node
	env    []string // of keep client commands talking to n0 as root
	hsms   softHSMs
}

func newHSMPair(t *testing.T) *hsmPair {
	t.Helper()
	h := newSoftHSMs(t, "")
	p := &hsmPair{hsms: h}
	p.n0 = testnode.Start(t, testnode.Options{Name: "n0", HSMKey: "-", Config: h.config("soft-a"), ExtraEnv: h.env})
	p.n1 = testnode.Start(t, testnode.Options{Name: "n1", HSMKey: "-", Config: h.config("soft-a", "soft-b"), ExtraEnv: h.env})
	// Restarts print no API key, which testnode would derive from
	// MINIO_KMS_HSM_KEY, unset here: the nodes keep soft-a's.
	p.n0.NoAPIKey, p.n1.NoAPIKey = true, true
	p.env = cliEnv(p.n0)
	cliOK(t, p.env, "add", p.n1.Host, "-k")

	// n1 took the cluster's state, sealed by soft-a alone; n0 has no soft-b.
	cliFails(t, p.env, 1, []string{"keep: HSM is not configured on this node: soft-b; this node's HSMs are soft-a"}, "add-hsm", "soft-b", "-k")
	cliOK(t, p.env, "add-hsm", "soft-b", "--host", p.n1.Addr, "-k")
	got := p.stat(t, "soft-a", "soft-b")
	if g := got[p.n0.Host]; g.UnsealedWith != "soft-a" || !slices.Equal(g.HSMActive, []string{"soft-a"}) {
		t.Errorf("stat of n0: %+v", g)
	}
	if g := got[p.n1.Host]; g.UnsealedWith != "soft-a" || !slices.Equal(g.HSMActive, []string{"soft-a", "soft-b"}) {
		t.Errorf("stat of n1: %+v", g)
	}
	return p
}

// nodeHSMs are the HSM fields of a node in keep stat --json.
type nodeHSMs struct {
	Host         string   `json:"host"`
	HSM          []string `json:"hsm"`
	HSMActive    []string `json:"hsm_active"`
	UnsealedWith string   `json:"unsealed_with"`
}

// stat returns each node's HSM fields by host, once both nodes are up and
// their states agree that sealedBy seal the root key.
func (p *hsmPair) stat(t *testing.T, sealedBy ...string) map[string]nodeHSMs {
	t.Helper()
	var nodes map[string]nodeHSMs
	ok := waitFor(10*time.Second, func() bool {
		var v struct {
			Nodes []nodeHSMs `json:"nodes"`
		}
		cliJSON(t, p.env, &v, "stat", "-k")
		nodes = map[string]nodeHSMs{}
		for _, n := range v.Nodes {
			nodes[n.Host] = n
			if !slices.Equal(n.HSM, sealedBy) {
				return false
			}
		}
		return len(nodes) == 2
	})
	if !ok {
		t.Fatalf("keep stat --json: %+v; want 2 nodes up, each with hsm %v", nodes, sealedBy)
	}
	return nodes
}

// TestHSMCLICluster moves one node of two to soft-b: keep stat shows each
// node's HSM, and rm-hsm refuses an HSM that a node uses or may use (one
// that is down).
func TestHSMCLICluster(t *testing.T) {
	t.Parallel()
	p := newHSMPair(t)

	// n1 puts soft-b first: it unseals with soft-b's seal and presents
	// soft-b's node key, which n0 accepts as soft-b seals the root key.
	p.n1.Stop()
	p.n1.Config = p.hsms.config("soft-b", "soft-a")
	p.n1.MustStart()
	if g := p.stat(t, "soft-a", "soft-b")[p.n1.Host]; g.UnsealedWith != "soft-b" || !slices.Equal(g.HSMActive, []string{"soft-b", "soft-a"}) {
		t.Errorf("stat of n1 on soft-b: %+v", g)
	}
	if out := cliOK(t, p.env, "stat", "-k"); !strings.Contains(out, "All [2/2] nodes are up") || !strings.Contains(out, "  HSM       soft-b (configured: soft-b, soft-a)\n") {
		t.Errorf("keep stat:\n%s", out)
	}
	cliFails(t, p.env, 1, []string{"keep: HSM is in use", "uses soft-a"}, "rm-hsm", "soft-a", "-k")
	cliFails(t, p.env, 1, []string{"keep: HSM is in use", "uses soft-b"}, "rm-hsm", "soft-b", "-k")
	p.n1.Stop()
	cliFails(t, p.env, 1, []string{"keep: HSM is in use", p.n1.Host, "does not answer"}, "rm-hsm", "soft-b", "-k")
}

// TestHSMCLIClusterMove moves n1 to soft-b alone, the way the issue moves
// nodes from one HSM to the next: it must rejoin n0, which is on soft-a.
//
// It fails on main 018f5ae and 4c2f370, and so does step 4 of docs/hsm.md
// on a cluster without a snapshot since add-hsm: until a restarted node has replayed its log,
// its state has no seals, so its transport trusts only the node keys of its
// own HSMs (server.trustHSMs: own || st.NodeIdentities()); it refuses n0's
// soft-a certificate both ways ("peer is not a node of this cluster"), no
// leader is elected, and it exits after 30 s. The seals with the node
// identities are in its kms.db (fsm.sealsChanged), which it could trust
// from the start.
func TestHSMCLIClusterMove(t *testing.T) {
	t.Parallel()
	p := newHSMPair(t)
	p.n1.Stop()
	p.n1.Config = p.hsms.config("soft-b")
	p.n1.MustStart()
	if g := p.stat(t, "soft-a", "soft-b")[p.n1.Host]; g.UnsealedWith != "soft-b" || !slices.Equal(g.HSMActive, []string{"soft-b"}) {
		t.Errorf("stat of n1 on soft-b: %+v", g)
	}
	cliFails(t, p.env, 1, []string{"keep: HSM is in use", "uses soft-b"}, "rm-hsm", "soft-b", "-k")
}
