package cli

import (
	"encoding/hex"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/encoding/protowire"
)

func TestHSMCommands(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		status int    // the fake server's reply
		msg    string // its error message
		frame  string // the request, hex as in spec upstream §11.3
		stdout string
		stderr string
		code   int
	}{
		{
			name: "add", args: []string{"add-hsm", "vault"}, status: http.StatusOK,
			frame:  "0005 00000007 0a057661756c74",
			stdout: "HSM vault seals the cluster's root key now\n",
		},
		{
			name: "add overwrite", args: []string{"add-hsm", "vault", "--overwrite"}, status: http.StatusOK,
			frame:  "0005 00000009 0a057661756c74 1001",
			stdout: "HSM vault has sealed the cluster's root key anew, replacing any seal it had\n",
		},
		{
			name: "add not configured", args: []string{"add-hsm", "vault"}, status: http.StatusNotFound,
			msg:    "HSM is not configured on this node: vault; this node's HSMs are hsm:aes256: send the request to a node configured with it",
			frame:  "0005 00000007 0a057661756c74",
			stderr: "keep: HSM is not configured on this node: vault; this node's HSMs are hsm:aes256: send the request to a node configured with it\n",
			code:   ExitError,
		},
		{
			name: "add exists", args: []string{"add-hsm", "vault"}, status: http.StatusConflict,
			msg:    "HSM already seals the root key: vault; add it with overwrite to seal the root key again",
			frame:  "0005 00000007 0a057661756c74",
			stderr: "keep: HSM already seals the root key: vault; add it with overwrite to seal the root key again\n",
			code:   ExitError,
		},
		{
			name: "add forbidden", args: []string{"add-hsm", "vault", "--overwrite"}, status: http.StatusForbidden,
			msg:    "access denied: insufficient permissions",
			frame:  "0005 00000009 0a057661756c74 1001",
			stderr: "keep: access denied: insufficient permissions (check MINIO_KMS_API_KEY and the enclave)\n",
			code:   ExitError,
		},
		{
			name: "rm", args: []string{"rm-hsm", "vault"}, status: http.StatusOK,
			frame:  "0006 00000007 0a057661756c74",
			stdout: "Removed HSM vault: it no longer seals the cluster's root key\n",
		},
		{
			name: "rm unknown", args: []string{"rm-hsm", "vault"}, status: http.StatusNotFound,
			msg:    "HSM does not seal the root key: vault; the cluster's HSMs are hsm:aes256",
			frame:  "0006 00000007 0a057661756c74",
			stderr: "keep: HSM does not seal the root key: vault; the cluster's HSMs are hsm:aes256\n",
			code:   ExitError,
		},
		{
			name: "rm in use", args: []string{"rm-hsm", "vault"}, status: http.StatusConflict,
			msg:    "HSM is in use: node 0 (127.0.0.2:7373) uses vault: restart it with another of the cluster's HSMs first",
			frame:  "0006 00000007 0a057661756c74",
			stderr: "keep: HSM is in use: node 0 (127.0.0.2:7373) uses vault: restart it with another of the cluster's HSMs first\n",
			code:   ExitError,
		},
		{
			name: "rm forbidden", args: []string{"rm-hsm", "vault"}, status: http.StatusForbidden,
			msg:    "access denied: insufficient permissions",
			frame:  "0006 00000007 0a057661756c74",
			stderr: "keep: access denied: insufficient permissions (check MINIO_KMS_API_KEY and the enclave)\n",
			code:   ExitError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeKMS(t, func(cmds.Command, []byte) (int, []byte) {
				if tt.status == http.StatusOK {
					return http.StatusOK, nil
				}
				return tt.status, []byte(tt.msg)
			})
			stdout, stderr, code := f.run("", tt.args...)
			if code != tt.code || stdout != tt.stdout || stderr != tt.stderr {
				t.Errorf("exit code %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
			want, err := hex.DecodeString(strings.ReplaceAll(tt.frame, " ", ""))
			if err != nil {
				t.Fatal(err)
			}
			if len(f.bodies) != 1 || string(f.bodies[0]) != string(want) {
				t.Fatalf("requests %x, want one: %x", f.bodies, want)
			}
			if f.enclaves[0] != "" {
				t.Errorf("request to enclave %q, want none", f.enclaves[0])
			}
		})
	}
}

// TestAddHSMHost checks that --host sends add-hsm to that node, whatever
// MINIO_KMS_SERVER says.
func TestAddHSMHost(t *testing.T) {
	f := newFakeKMS(t, ok(t, 0))
	host := strings.TrimPrefix(f.srv.URL, "https://")
	env := map[string]string{EnvServer: "https://127.0.0.1:1", EnvAPIKey: testAPIKey}
	stdout, stderr, code := runCLI(t, env, "", "add-hsm", "token-b", "--host", host, "-k")
	if code != ExitOK || stdout != "HSM token-b seals the cluster's root key now\n" {
		t.Fatalf("exit code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	var req pb.RemoveClusterNodeRequest
	f.request(0, 5, &req)
	if req.Host != "token-b" || req.DeleteClusterOnHost {
		t.Errorf("request %v", &req)
	}
}

func TestHSMUsageErrors(t *testing.T) {
	f := newFakeKMS(t, ok(t, 0))
	tests := []struct {
		args []string
		msg  string
	}{
		{[]string{"add-hsm"}, "usage: keep add-hsm NAME"},
		{[]string{"add-hsm", "a", "b"}, "too many arguments"},
		{[]string{"add-hsm", ""}, "an HSM name must have 1 to"},
		{[]string{"add-hsm", "two words"}, "only printable characters without spaces"},
		{[]string{"add-hsm", "a", "--host", "http://node1"}, "the only scheme is https://"},
		{[]string{"rm-hsm"}, "usage: keep rm-hsm NAME"},
		{[]string{"rm-hsm", "tab\there"}, "only printable characters without spaces"},
		{[]string{"rm-hsm", "a", "--overwrite"}, "unknown flag: --overwrite"},
	}
	for _, tt := range tests {
		_, stderr, code := f.run("", tt.args...)
		if code != ExitUsage || !strings.Contains(stderr, tt.msg) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("keep %q: exit code %d, stderr %q; want %d and one line with %q", tt.args, code, stderr, ExitUsage, tt.msg)
		}
	}
	if len(f.bodies) != 0 {
		t.Errorf("usage errors sent %d requests", len(f.bodies))
	}
}

// hsmStatus returns testStatus as protobuf, node 0 with the HSM fields
// of a node that unsealed with token-a, node 1 without them (a server
// that does not send them).
func hsmStatus(t *testing.T) *pb.ClusterStatusResponse {
	var s pb.ClusterStatusResponse
	if err := testStatus().MarshalPB(&s); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, f := range []struct {
		num  protowire.Number
		name string
	}{{19, "token-a"}, {7373, "token-a"}, {19, "hsm:aes256"}, {20, "token-a"}, {20, "hsm:aes256"}} {
		b = protowire.AppendTag(b, f.num, protowire.BytesType)
		b = protowire.AppendString(b, f.name)
	}
	b = protowire.AppendTag(b, 99, protowire.VarintType) // a field of a newer server
	b = protowire.AppendVarint(b, 7)
	s.NodesUp[0].ProtoReflect().SetUnknown(b)
	return &s
}

func TestStatHSMs(t *testing.T) {
	f := newFakeKMS(t, ok(t, cmds.ClusterStatus, hsmStatus(t)))
	stdout, stderr, code := f.run("", "stat")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	want := `  System    linux/amd64, 2 CPUs, heap 12 MiB
  HSM       token-a (configured: token-a, hsm:aes256)
  Sealed by token-a, hsm:aes256
● Node 1 at n1:7373
`
	if !strings.Contains(stdout, want) || strings.Count(stdout, "HSM") != 1 {
		t.Errorf("output\n%s\nwant HSM lines for node 0 only:\n%s", stdout, want)
	}

	stdout, _, _ = f.run("", "stat", "--json")
	got := decodeJSON[clusterStatusJSON](t, stdout)
	n0, n1 := got.Nodes[0], got.Nodes[1]
	if n0.UnsealedWith != "token-a" || !reflect.DeepEqual(n0.HSMs, []string{"token-a", "hsm:aes256"}) || !reflect.DeepEqual(n0.ConfiguredHSMs, []string{"token-a", "hsm:aes256"}) {
		t.Errorf("node 0: %+v", n0)
	}
	if n1.UnsealedWith != "" || n1.HSMs != nil || n1.ConfiguredHSMs != nil || *n1.Lag != 5 {
		t.Errorf("node 1: %+v", n1)
	}
	for _, key := range []string{`"hsm": [`, `"hsm_active": [`, `"unsealed_with": "token-a"`} {
		if strings.Count(stdout, key) != 1 {
			t.Errorf("JSON has %q %d times, want once (node 0)\n%s", key, strings.Count(stdout, key), stdout)
		}
	}
}

// TestStatOldServer checks that stat shows nothing about HSMs, and no
// error, for a server that does not send the HSM fields.
func TestStatOldServer(t *testing.T) {
	var s pb.ClusterStatusResponse
	if err := testStatus().MarshalPB(&s); err != nil {
		t.Fatal(err)
	}
	f := newFakeKMS(t, ok(t, cmds.ClusterStatus, &s))
	stdout, stderr, code := f.run("", "stat")
	if code != ExitOK || strings.Contains(stdout, "HSM") || strings.Contains(stdout, "Sealed") {
		t.Errorf("exit code %d, stderr %q, output\n%s", code, stderr, stdout)
	}
	stdout, _, _ = f.run("", "stat", "--json")
	if strings.Contains(stdout, "hsm") || strings.Contains(stdout, "unsealed_with") {
		t.Errorf("JSON\n%s", stdout)
	}
}

func TestStatBadReply(t *testing.T) {
	tests := []struct {
		name  string
		reply []byte
		msg   string
	}{
		{"two replies", frame(t, cmds.ClusterStatus, &pb.ClusterStatusResponse{}, &pb.ClusterStatusResponse{}), "more than one status"},
		{"other command", frame(t, cmds.ClusterEdit, &pb.ClusterStatusResponse{}), "cannot decode cluster status"},
		{"truncated", frame(t, cmds.ClusterStatus, hsmStatus(t))[:20], "cannot decode cluster status"},
	}
	for _, tt := range tests {
		f := newFakeKMS(t, func(cmds.Command, []byte) (int, []byte) { return http.StatusOK, tt.reply })
		_, stderr, code := f.run("", "stat")
		if code != ExitError || !strings.Contains(stderr, tt.msg) {
			t.Errorf("%s: exit code %d, stderr %q; want it to contain %q", tt.name, code, stderr, tt.msg)
		}
	}
}

func TestDecodeNodeHSMs(t *testing.T) {
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	spec, _ := hex.DecodeString("9a010a68736d3a616573323536a2010a68736d3a616573323536") // spec upstream §15
	tests := []struct {
		name string
		in   []byte
		want nodeHSMs
		err  bool
	}{
		{name: "none", in: nil},
		{name: "spec example", in: spec, want: nodeHSMs{Sealing: []string{"hsm:aes256"}, Configured: []string{"hsm:aes256"}}},
		{name: "all", in: slices.Concat(str(20, "b"), str(19, "a"), str(7373, "b"), str(19, "b")), want: nodeHSMs{Sealing: []string{"a", "b"}, Configured: []string{"b"}, UnsealedWith: "b"}},
		{name: "other fields skipped", in: slices.Concat(protowire.AppendVarint(protowire.AppendTag(nil, 19, protowire.VarintType), 1), str(21, "x"), str(20, "b")), want: nodeHSMs{Configured: []string{"b"}}},
		{name: "truncated string", in: str(19, "abc")[:4], err: true},
		{name: "bad tag", in: []byte{0x80}, err: true},
		{name: "truncated other field", in: protowire.AppendTag(nil, 21, protowire.Fixed64Type), err: true},
	}
	for _, tt := range tests {
		got, err := decodeNodeHSMs(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %+v, %v; want %+v, error %v", tt.name, got, err, tt.want, tt.err)
		}
	}
}

// FuzzDecodeNodeHSMs feeds decodeNodeHSMs what a server may send: it must
// not panic, and what it decodes must encode to the same fields.
func FuzzDecodeNodeHSMs(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeNodeHSMs(b)
		if err != nil {
			if !h.empty() {
				t.Errorf("error %v with a result %+v", err, h)
			}
			return
		}
		var again []byte
		for _, s := range h.Sealing {
			again = protowire.AppendString(protowire.AppendTag(again, fieldHSMs, protowire.BytesType), s)
		}
		for _, s := range h.Configured {
			again = protowire.AppendString(protowire.AppendTag(again, fieldConfiguredHSMs, protowire.BytesType), s)
		}
		if h.UnsealedWith != "" {
			again = protowire.AppendString(protowire.AppendTag(again, fieldUnsealedWith, protowire.BytesType), h.UnsealedWith)
		}
		h2, err := decodeNodeHSMs(again)
		if err != nil || !reflect.DeepEqual(h, h2) {
			t.Errorf("decoded %+v, re-encoded and decoded %+v, %v", h, h2, err)
		}
	})
}

func TestHSMHelp(t *testing.T) {
	stdout, _, code := runCLI(t, nil, "", "--help")
	_, cluster, _ := strings.Cut(stdout, "Cluster:\n")
	cluster, _, _ = strings.Cut(cluster, "\n\n")
	for _, want := range []string{"  add-hsm ", "\n  rm-hsm "} {
		if code != ExitOK || !strings.Contains(cluster, want) {
			t.Errorf("keep --help does not list %q under Cluster:\n%s", strings.TrimSpace(want), stdout)
		}
	}
	stdout, _, _ = runCLI(t, nil, "", "add-hsm", "--help")
	for _, want := range []string{"--host", "MINIO_KMS_SERVER", "configured with", "--overwrite"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("keep add-hsm --help does not mention %q:\n%s", want, stdout)
		}
	}
}
