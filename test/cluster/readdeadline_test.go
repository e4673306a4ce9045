package cluster_test

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keep-kms/keep/test/testnode"
)

// TestAppliedStreamOutlivesReadTimeout: a follower reports its applied
// index to the leader in the body of one long-lived request
// (/v1/rpc/applied). The server's read deadline (20 s, which cuts off
// clients that trickle their bodies) must not end that stream: over 25
// idle seconds the leader completes no RPC request.
func TestAppliedStreamOutlivesReadTimeout(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{})
	c.form()
	leader := c.lead()
	hc := testnode.HTTPClient(t, c.root, 5*time.Second)
	rpcs := func() int {
		t.Helper()
		res, err := hc.Get(c.nodes[leader].Endpoint() + "/v1/health/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		total := 0
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "keep_http_requests_total{") || !strings.Contains(line, `api="rpc"`) {
				continue
			}
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			total += int(v)
		}
		io.Copy(io.Discard, res.Body)
		return total
	}
	time.Sleep(2 * time.Second) // the follower's stream is open
	before := rpcs()
	time.Sleep(25 * time.Second)
	if after := rpcs(); after != before {
		t.Errorf("the leader completed %d RPC requests in 25 idle seconds; the follower's applied stream was cut off", after-before)
	}
}
