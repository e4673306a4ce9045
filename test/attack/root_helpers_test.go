package attack

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keep-kms/keep/test/testnode"
)

// auditedCluster is a cluster of nodes that share an HSM key, each writing
// its audit log to a file of its own.
type auditedCluster struct {
	hsmKey string
	nodes  []*testnode.Node
	audit  []string // the audit file of each node
}

// newAuditedCluster starts n nodes and joins them into one cluster
// through the first.
func newAuditedCluster(t *testing.T, n int) *auditedCluster {
	t.Helper()
	c := &auditedCluster{hsmKey: testnode.NewHSMKey(t)}
	dir := t.TempDir()
	for i := range n {
		sink := filepath.Join(dir, fmt.Sprintf("audit-%d.log", i))
		cfg := filepath.Join(dir, fmt.Sprintf("keep-%d.yaml", i))
		if err := os.WriteFile(cfg, []byte("version: v1\naudit:\n  sink: "+sink+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.audit = append(c.audit, sink)
		c.nodes = append(c.nodes, testnode.Start(t, testnode.Options{Name: fmt.Sprintf("n%d", i), HSMKey: c.hsmKey, Config: cfg}))
	}
	for _, node := range c.nodes[1:] {
		if r := c.cli(t, c.nodes[0].APIKey, "add", node.Addr); r.Code != 0 {
			t.Fatalf("keep add %s: %s", node.Addr, r)
		}
	}
	return c
}

// endpoints are the nodes' https:// endpoints, the first first.
func (c *auditedCluster) endpoints() []string {
	var e []string
	for _, n := range c.nodes {
		e = append(e, n.Endpoint())
	}
	return e
}

// cli runs a keep client command through the first node with apiKey.
func (c *auditedCluster) cli(t *testing.T, apiKey string, args ...string) testnode.Result {
	t.Helper()
	return testnode.CLI(t, c.endpoints()[:1], apiKey, append(args, "-k")...)
}

// auditRecord is one line of an audit file, as far as these tests read it.
type auditRecord struct {
	Node     string `json:"node"`
	Identity string `json:"identity"`
	API      string `json:"api"`
	Command  string `json:"command"`
	Resource string `json:"resource"`
	Status   int    `json:"status"`
}

// auditRecords reads the records of an audit file.
func auditRecords(t *testing.T, file string) []auditRecord {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var records []auditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v: %s", file, err, sc.Text())
		}
		records = append(records, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return records
}

// waitRecord waits until the audit file holds a record that match
// accepts, and returns it.
func waitRecord(t *testing.T, file string, match func(auditRecord) bool) (auditRecord, bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, r := range auditRecords(t, file) {
			if match(r) {
				return r, true
			}
		}
		if time.Now().After(deadline) {
			return auditRecord{}, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// configOf is what keep config get --json shows of a node.
type configOf struct {
	Cluster   map[string]string `json:"cluster"`
	Effective map[string]string `json:"effective"`
}

// jsonUnmarshal decodes the JSON s into v.
func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
