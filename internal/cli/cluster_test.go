package cli

import (
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
)

func TestHostPort(t *testing.T) {
	tests := []struct {
		in, want string
		err      string // part of the error, "" for success
	}{
		{in: "node1.example.net", want: "node1.example.net:7373"},
		{in: "node1.example.net:8443", want: "node1.example.net:8443"},
		{in: " 127.0.0.1 ", want: "127.0.0.1:7373"},
		{in: "127.0.0.1:7001", want: "127.0.0.1:7001"},
		{in: "https://127.0.0.1:7001", want: "127.0.0.1:7001"},
		{in: "https://node1/", want: "node1:7373"},
		{in: "::1", want: "[::1]:7373"},
		{in: "[::1]", want: "[::1]:7373"},
		{in: "[fe80::1]:8443", want: "[fe80::1]:8443"},
		{in: "", err: "it is empty"},
		{in: "https://", err: "it is empty"},
		{in: "http://node1", err: "the only scheme is https://"},
		{in: "node1/v1", err: "expected a host name"},
		{in: "user@node1", err: "expected a host name"},
		{in: ":7373", err: "the host is missing"},
		{in: "[::1", err: "missing ']'"},
		{in: "node1:0", err: "port must be a number from 1 to 65535"},
		{in: "node1:65536", err: "port must be a number"},
		{in: "node1:https", err: "port must be a number"},
		{in: "a:b:c", err: "expected a host name"},
	}
	for _, tt := range tests {
		got, err := hostPort(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("hostPort(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("hostPort(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.err)
		}
	}
}

// testStatus is a cluster of three nodes: node 0 leads, node 1 follows 5
// entries behind, node 2 is down.
func testStatus() *kms.ClusterStatusResponse {
	nodes := map[int]string{0: "n0:7373", 1: "n1:7373", 2: "n2:7373"}
	return &kms.ClusterStatusResponse{
		NodesUp: map[int]*kms.ServerStatusResponse{
			0: {
				Version: "2025-11-12T19-14-51Z", APIVersion: "v1", Host: "n0:7373", UpTime: 5*time.Minute + 3*time.Second,
				Role: "Leader", Commit: 1234, Nodes: nodes, ID: 0, LeaderID: 0,
				HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
				OS: "linux", CPUArch: "amd64", CPUs: 2, UsableCPUs: 2, HeapMemInUse: 12 << 20, StackMemInUse: 1 << 20,
			},
			1: {
				Version: "2025-11-12T19-14-51Z", APIVersion: "v1", Host: "n1:7373", UpTime: 4 * time.Minute,
				Role: "Follower", Commit: 1229, Nodes: nodes, ID: 1, LeaderID: 0, LastHeartbeat: 233 * time.Millisecond,
				OS: "linux", CPUArch: "arm64", CPUs: 8, UsableCPUs: 4, HeapMemInUse: 1536 << 10,
			},
		},
		NodesDown: map[int]string{2: "n2:7373"},
	}
}

func TestWriteClusterStatus(t *testing.T) {
	var b strings.Builder
	if err := writeClusterStatus(&b, testStatus(), nil, false); err != nil {
		t.Fatal(err)
	}
	want := `● Node 0 at n0:7373
  Version   2025-11-12T19-14-51Z
  Uptime    5m
  State     Leader
  Leader    Node 0
  Commit    1234
  Heartbeat -
  Lag       0
  System    linux/amd64, 2 CPUs, heap 12 MiB
● Node 1 at n1:7373
  Version   2025-11-12T19-14-51Z
  Uptime    4m
  State     Follower
  Leader    Node 0
  Commit    1229
  Heartbeat 233ms ago
  Lag       5
  System    linux/arm64, 8 CPUs (4 used), heap 1.5 MiB
● Node 2 at n2:7373
  State     down
[2/3] nodes are up: node 2 (n2:7373) is down
`
	if got := b.String(); got != want {
		t.Errorf("output\n%s\nwant\n%s", got, want)
	}

	// Colours only when asked for: red for down, green for up.
	b.Reset()
	writeClusterStatus(&b, testStatus(), nil, true)
	if got := b.String(); !strings.Contains(got, colorGreen+"●"+colorReset+" Node 0") || !strings.Contains(got, colorRed+"●"+colorReset+" Node 2") {
		t.Errorf("coloured output lacks the bullets:\n%q", got)
	}
}

func TestClusterStatusSummary(t *testing.T) {
	allUp := func() *kms.ClusterStatusResponse {
		s := testStatus()
		s.NodesUp[2] = &kms.ServerStatusResponse{Host: "n2:7373", Role: "Follower", LeaderID: 0, ID: 2}
		s.NodesDown = map[int]string{}
		return s
	}
	noLeader := allUp()
	for _, n := range noLeader.NodesUp {
		n.Role, n.LeaderID = "Candidate", -1
	}
	twoDown := testStatus()
	delete(twoDown.NodesUp, 1)
	twoDown.NodesDown[1] = "n1:7373"

	tests := []struct {
		name string
		s    *kms.ClusterStatusResponse
		want string
	}{
		{"all up", allUp(), "All [3/3] nodes are up ✔\n"},
		{"no leader", noLeader, "All [3/3] nodes are up, but none is the leader\n"},
		{"one down", testStatus(), "[2/3] nodes are up: node 2 (n2:7373) is down\n"},
		{"two down", twoDown, "[1/3] nodes are up: nodes 1 (n1:7373), 2 (n2:7373) are down\n"},
		{"empty", &kms.ClusterStatusResponse{}, "No nodes\n"},
	}
	for _, tt := range tests {
		var b strings.Builder
		writeClusterStatus(&b, tt.s, nil, false)
		if !strings.HasSuffix(b.String(), tt.want) {
			t.Errorf("%s: output ends\n%s\nwant\n%s", tt.name, b.String(), tt.want)
		}
	}
	var b strings.Builder
	writeClusterStatus(&b, noLeader, nil, false)
	if !strings.Contains(b.String(), "  Leader    none\n") || !strings.Contains(b.String(), "  Lag       -\n") {
		t.Errorf("no leader:\n%s", b.String())
	}
}

func TestLag(t *testing.T) {
	s := testStatus()
	s.NodesUp[3] = &kms.ServerStatusResponse{Role: "Follower", LeaderID: 0, Commit: 1240} // read after the leader
	s.NodesUp[4] = &kms.ServerStatusResponse{Role: "Follower", LeaderID: 2, Commit: 10}   // its leader is down
	s.NodesUp[5] = &kms.ServerStatusResponse{Role: "Candidate", LeaderID: -1, Commit: 10} // no leader
	s.NodesUp[6] = nil
	tests := []struct {
		id   int
		want uint64
		ok   bool
	}{
		{0, 0, true},
		{1, 5, true},
		{2, 0, false},
		{3, 0, true},
		{4, 0, false},
		{5, 0, false},
		{6, 0, false},
		{9, 0, false},
	}
	for _, tt := range tests {
		if got, ok := lag(s, tt.id); got != tt.want || ok != tt.ok {
			t.Errorf("lag of node %d = %d, %v; want %d, %v", tt.id, got, ok, tt.want, tt.ok)
		}
	}
}

func TestClusterView(t *testing.T) {
	v := clusterView(testStatus(), nil)
	if v.Up != 2 || v.Total != 3 || len(v.Nodes) != 3 {
		t.Fatalf("view %+v", v)
	}
	n0, n1, n2 := v.Nodes[0], v.Nodes[1], v.Nodes[2]
	if n0.State != "Leader" || *n0.LeaderID != 0 || *n0.Commit != 1234 || *n0.Lag != 0 || n0.Uptime != "303s" ||
		n0.HeartbeatInterval != "0.05s" || n0.Nodes["2"] != "n2:7373" || n0.HeapInUse != 12<<20 {
		t.Errorf("node 0: %+v", n0)
	}
	if *n1.Lag != 5 || n1.LastHeartbeat != "0.233s" {
		t.Errorf("node 1: %+v", n1)
	}
	if !reflect.DeepEqual(n2, nodeStatusJSON{ID: 2, Host: "n2:7373", State: "down"}) {
		t.Errorf("node 2: %+v", n2)
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{233 * time.Millisecond, "233ms"},
		{1500 * time.Millisecond, "1.5s"},
		{42 * time.Second, "42s"},
		{5*time.Minute + 59*time.Second, "5m"},
		{3 * time.Hour, "3h"},
		{3*time.Hour + 5*time.Minute, "3h5m"},
		{50 * time.Hour, "2d2h"},
		{48 * time.Hour, "2d"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536 << 10, "1.5 MiB"},
		{12 << 20, "12 MiB"},
		{3 << 30, "3.0 GiB"},
	}
	for _, tt := range tests {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestAddAndRemoveNode(t *testing.T) {
	f := newFakeKMS(t, ok(t, 0))
	stdout, stderr, code := f.run("", "add", "127.0.0.2")
	if code != ExitOK || stdout != "Added 127.0.0.2:7373 to the cluster\n" {
		t.Fatalf("exit code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	var add pb.AddClusterNodeRequest
	f.request(0, cmds.ClusterAddNode, &add)
	if add.Host != "127.0.0.2:7373" {
		t.Errorf("request %v", &add)
	}

	// The node to add is not asked to add itself, whatever
	// MINIO_KMS_SERVER lists.
	env := map[string]string{EnvServer: "https://127.0.0.2:7373," + f.srv.URL + ",127.0.0.2", EnvAPIKey: testAPIKey}
	for range 5 {
		if _, stderr, code := runCLI(t, env, "", "add", "127.0.0.2", "-k"); code != ExitOK {
			t.Fatalf("MINIO_KMS_SERVER listing the new node: exit code %d: %s", code, stderr)
		}
	}
	env[EnvServer] = "127.0.0.2:7373"
	if _, stderr, code := runCLI(t, env, "", "add", "127.0.0.2", "-k"); code != ExitError || !strings.Contains(stderr, "point it at a node of the cluster") {
		t.Errorf("MINIO_KMS_SERVER only the new node: exit code %d: %s", code, stderr)
	}

	f.run("", "rm", "127.0.0.2:7001")
	f.run("", "rm", "127.0.0.3", "--delete-cluster")
	var rm, rmDelete pb.RemoveClusterNodeRequest
	f.request(6, cmds.ClusterRemoveNode, &rm)
	f.request(7, cmds.ClusterRemoveNode, &rmDelete)
	if rm.Host != "127.0.0.2:7001" || rm.DeleteClusterOnHost || rmDelete.Host != "127.0.0.3:7373" || !rmDelete.DeleteClusterOnHost {
		t.Errorf("requests %v and %v", &rm, &rmDelete)
	}
}

func TestAddNodeError(t *testing.T) {
	f := newFakeKMS(t, func(cmds.Command, []byte) (int, []byte) {
		return http.StatusConflict, []byte("node is not fresh: 127.0.0.2:7373 holds enclaves")
	})
	stdout, stderr, code := f.run("", "add", "127.0.0.2")
	if code != ExitError || stdout != "" || stderr != "keep: node is not fresh: 127.0.0.2:7373 holds enclaves\n" {
		t.Errorf("exit code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestAddNodeRetries checks what the chart's join Job relies on: with
// --exists-ok a node that is a member already is success, and with --wait
// the command tries again after 5xx answers but never after a 4xx.
func TestAddNodeRetries(t *testing.T) {
	exists := reply{http.StatusConflict, "node is already part of the cluster: 127.0.0.2:7373 is node 3"}
	notFresh := reply{http.StatusConflict, "node is not fresh: 127.0.0.2:7373 holds enclaves"}
	unreachable := reply{http.StatusBadGateway, "node is not reachable: 127.0.0.2:7373"}
	noLeader := reply{http.StatusServiceUnavailable, "no leader"}
	added := reply{http.StatusOK, ""}
	tests := []struct {
		name     string
		flags    []string
		replies  []reply // the last one repeats
		code     int
		requests int
		stdout   string
		stderr   string
	}{
		{"member, plain", nil, []reply{exists}, ExitError, 1, "", "already part of the cluster"},
		{"member, exists-ok", []string{"--exists-ok"}, []reply{exists}, ExitOK, 1, "127.0.0.2:7373 is a node of the cluster already\n", ""},
		{"not fresh, exists-ok", []string{"--exists-ok", "--wait", "1m"}, []reply{notFresh}, ExitError, 1, "", "node is not fresh"},
		{"5xx without wait", nil, []reply{unreachable}, ExitError, 1, "", "not reachable"},
		{"5xx, then added", []string{"--wait", "1m"}, []reply{unreachable, noLeader, added}, ExitOK, 3, "Added 127.0.0.2:7373 to the cluster\n", "trying again"},
		{"5xx, then member", []string{"--wait", "1m", "--exists-ok"}, []reply{noLeader, exists}, ExitOK, 2, "127.0.0.2:7373 is a node of the cluster already\n", "no leader"},
		{"5xx until the wait is over", []string{"--wait", "3s"}, []reply{noLeader}, ExitError, 2, "", "no leader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			f := newFakeKMS(t, func(cmds.Command, []byte) (int, []byte) {
				r := tt.replies[min(int(n.Add(1))-1, len(tt.replies)-1)]
				if r.status == http.StatusOK {
					return r.status, frame(t, 0)
				}
				return r.status, []byte(r.text)
			})
			stdout, stderr, code := f.run("", append([]string{"add", "127.0.0.2"}, tt.flags...)...)
			if code != tt.code || stdout != tt.stdout || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit code %d, stdout %q, stderr %q; want %d, %q, stderr with %q", code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
			if got := int(n.Load()); got != tt.requests {
				t.Errorf("%d requests, want %d", got, tt.requests)
			}
		})
	}
}

// TestAddNodeUntrusted checks that keep add --wait does not retry a server
// whose certificate does not verify: it will not verify later either.
func TestAddNodeUntrusted(t *testing.T) {
	f := newFakeKMS(t, ok(t, 0))
	env := map[string]string{EnvServer: f.srv.URL, EnvAPIKey: testAPIKey}
	start := time.Now()
	_, stderr, code := runCLI(t, env, "", "add", "127.0.0.2", "--wait", "1m")
	if code != ExitError || !strings.Contains(stderr, "not trusted") || strings.Contains(stderr, "trying again") {
		t.Errorf("exit code %d, stderr %q", code, stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %v", d)
	}
}

// reply is one answer of a fake server: a status and an error text.
type reply struct {
	status int
	text   string
}

func TestEdit(t *testing.T) {
	f := newFakeKMS(t, ok(t, 0))
	host := strings.TrimPrefix(f.srv.URL, "https://")
	// The request goes to HOST, not to MINIO_KMS_SERVER.
	env := map[string]string{EnvServer: "https://127.0.0.1:1", EnvAPIKey: testAPIKey}
	stdout, stderr, code := runCLI(t, env, "", "edit", host, "--rm", "2", "--rm", "3", "-k")
	if code != ExitOK || stdout != "Removed nodes 2, 3 from the cluster definition of "+host+"\n" {
		t.Fatalf("exit code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	var req pb.EditClusterRequest
	f.request(0, cmds.ClusterEdit, &req)
	if len(req.RemoveIDs) != 2 || req.RemoveIDs[0] != 2 || req.RemoveIDs[1] != 3 {
		t.Errorf("request %v", &req)
	}
}

func TestLsAndStat(t *testing.T) {
	var s pb.ClusterStatusResponse
	if err := testStatus().MarshalPB(&s); err != nil {
		t.Fatal(err)
	}
	f := newFakeKMS(t, ok(t, cmds.ClusterStatus, &s))

	stdout, stderr, code := f.run("", "ls")
	want := "ID  HOST     STATE\n0   n0:7373  Leader\n1   n1:7373  Follower\n2   n2:7373  down\n"
	if code != ExitOK || stdout != want {
		t.Errorf("exit code %d, stderr %q, output\n%s\nwant\n%s", code, stderr, stdout, want)
	}
	stdout, _, _ = f.run("", "ls", "--json")
	if got := decodeJSON[[]nodeJSON](t, stdout); len(got) != 3 || got[2] != (nodeJSON{ID: 2, Host: "n2:7373", State: "down"}) {
		t.Errorf("JSON %+v", got)
	}

	stdout, _, _ = f.run("", "stat")
	if !strings.HasPrefix(stdout, "● Node 0 at n0:7373\n") || !strings.HasSuffix(stdout, "[2/3] nodes are up: node 2 (n2:7373) is down\n") {
		t.Errorf("output\n%s", stdout)
	}
	stdout, _, _ = f.run("", "stat", "--json")
	if got := decodeJSON[clusterStatusJSON](t, stdout); got.Up != 2 || got.Total != 3 || *got.Nodes[1].Lag != 5 {
		t.Errorf("JSON %+v", got)
	}
}
