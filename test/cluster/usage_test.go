package cluster_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// keyInfo is the part of GET /v1/keys/{enclave}/{name} this test reads.
type keyInfo struct {
	Versions []struct {
		Version uint32 `json:"version"`
		State   string `json:"state"`
		Usage   struct {
			LastGenerate *time.Time `json:"last_generate"`
			LastDecrypt  *time.Time `json:"last_decrypt"`
			Generates30d uint64     `json:"generates_30d"`
			Decrypts30d  uint64     `json:"decrypts_30d"`
		} `json:"usage"`
	} `json:"versions"`
}

// keyRequest sends a Keep key route's request to node i as root and
// returns the status and body.
func (c *cluster) keyRequest(t *testing.T, i int, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.nodes[i].Endpoint()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := testnode.HTTPClient(t, c.root, 10*time.Second).Do(req)
	if err != nil {
		t.Fatalf("%s %s on node %d: %v", method, path, i, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// TestUsageAcrossNodes makes traffic on every node of a 3-node cluster and
// finds the usage of each key version summed over all of them, through the
// key route and the metrics of any node; then deleting or disabling the
// version that decrypted needs force.
func TestUsageAcrossNodes(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{})
	c.form()
	c.cli(c.nodes[0].APIKey, []int{0}, "config", "set", "usage.report_interval=300ms")
	const enclave, key = "default", "used"
	ctx := ctxT(t, 3*time.Minute)
	noErr(t, c.client(0).CreateKey(ctx, enclave, &kms.CreateKeyRequest{Name: key}), "create key")

	// Node i generates once with version 1 and decrypts i+1 times.
	start := time.Now().Add(-5 * time.Second) // the last uses are stamped by a clock that ticks once a second
	for i := range c.nodes {
		cl := c.client(i)
		deks, err := cl.GenerateKey(ctx, enclave, &kms.GenerateKeyRequest{Name: key})
		noErr(t, err, "generate on node %d", i)
		for range i + 1 {
			pt, err := cl.Decrypt(ctx, enclave, &kms.DecryptRequest{Name: key, Ciphertext: deks[0].Ciphertext})
			noErr(t, err, "decrypt on node %d", i)
			if !bytes.Equal(pt[0].Plaintext, deks[0].Plaintext) {
				t.Fatalf("node %d decrypted another plaintext", i)
			}
		}
	}
	// Version 2 only generates, on node 2.
	noErr(t, c.client(0).CreateKey(ctx, enclave, &kms.CreateKeyRequest{Name: key, AddVersion: true}), "rotate")
	_, err := c.client(2).GenerateKey(ctx, enclave, &kms.GenerateKeyRequest{Name: key})
	noErr(t, err, "generate with version 2")

	path := "/v1/keys/" + enclave + "/" + key
	want := map[uint32][2]uint64{1: {3, 6}, 2: {1, 0}} // generates, decrypts
	for i := range c.nodes {
		var (
			info keyInfo
			got  string
		)
		deadline := time.Now().Add(30 * time.Second)
		for {
			status, body := c.keyRequest(t, i, http.MethodGet, path, "")
			if status != http.StatusOK {
				t.Fatalf("GET %s on node %d: %d %s", path, i, status, body)
			}
			if err := json.Unmarshal(body, &info); err != nil {
				t.Fatalf("GET %s: %v: %s", path, err, body)
			}
			got = ""
			for _, v := range info.Versions {
				got += fmt.Sprintf("v%d %d/%d ", v.Version, v.Usage.Generates30d, v.Usage.Decrypts30d)
			}
			if got == fmt.Sprintf("v1 %d/%d v2 %d/%d ", want[1][0], want[1][1], want[2][0], want[2][1]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d shows usage (generates/decrypts) %s30s after the traffic; want v1 3/6 v2 1/0", i, got)
			}
			time.Sleep(200 * time.Millisecond)
		}
		v1, v2 := info.Versions[0].Usage, info.Versions[1].Usage
		if v1.LastDecrypt == nil || v1.LastDecrypt.Before(start) || v1.LastDecrypt.After(time.Now()) ||
			v1.LastGenerate == nil || v2.LastGenerate == nil || v2.LastDecrypt != nil {
			t.Errorf("node %d: last uses v1 %+v, v2 %+v", i, v1, v2)
		}
	}

	// Metrics: per key, summed over its versions, on any node.
	for i := range c.nodes {
		status, body := c.keyRequest(t, i, http.MethodGet, "/v1/health/metrics", "")
		line := fmt.Sprintf(`keep_key_decrypts_30d{enclave="%s",key="%s"} 6`, enclave, key)
		if status != http.StatusOK || !strings.Contains(string(body), line+"\n") {
			t.Errorf("metrics of node %d (%d) lack %s", i, status, line)
		}
		if !strings.Contains(string(body), fmt.Sprintf(`keep_key_generates_30d{enclave="%s",key="%s"} 4`, enclave, key)) {
			t.Errorf("metrics of node %d lack 4 generates of the key", i)
		}
	}

	// The force rule, on any node: version 1 decrypted, version 2 did not.
	inUse := "key version is in use: version 1 of key used decrypted 6 times in the last 30 days, last at "
	for _, tc := range []struct {
		node   int
		action string
		body   string
		status int
		text   string
	}{
		{1, "disable", `{"version":1}`, http.StatusConflict, inUse},
		{2, "delete", `{"version":1}`, http.StatusConflict, inUse},
		{0, "delete", `{"all":true}`, http.StatusConflict, inUse},
		{0, "disable", `{"all":true}`, http.StatusConflict, inUse},
		{1, "delete", `{"version":2}`, http.StatusOK, `"state":"pending-deletion"`},
		{1, "cancel-delete", `{"version":2}`, http.StatusOK, `"state":"active"`},
		{2, "disable", `{"version":1,"force":true}`, http.StatusOK, `"state":"disabled"`},
		{0, "enable", `{"version":1}`, http.StatusOK, `"state":"active"`},
		{0, "delete", `{"version":1,"force":true,"window":"0s"}`, http.StatusOK, `"versions":[{"version":2,`},
	} {
		status, body := c.keyRequest(t, tc.node, http.MethodPut, path+"/"+tc.action, tc.body)
		if status != tc.status || !strings.Contains(string(body), tc.text) {
			t.Errorf("PUT %s %s on node %d: %d %s; want %d and %q", tc.action, tc.body, tc.node, status, body, tc.status, tc.text)
		}
		if tc.status == http.StatusConflict && !strings.HasSuffix(strings.TrimSpace(string(body)), `; add --force"}`) {
			t.Errorf("PUT %s %s: the refusal does not say how to force it: %s", tc.action, tc.body, body)
		}
	}
	// The destroyed version's usage is gone with it; the key's metrics keep
	// what version 2 did.
	for i := range c.nodes {
		_, body := c.keyRequest(t, i, http.MethodGet, "/v1/health/metrics", "")
		if line := fmt.Sprintf(`keep_key_decrypts_30d{enclave="%s",key="%s"} 0`, enclave, key); !strings.Contains(string(body), line+"\n") {
			t.Errorf("metrics of node %d lack %s after version 1 was destroyed", i, line)
		}
	}
}
