package cli

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
)

// fakeRestart is a server that answers restart requests with restart and
// cluster status requests with one node, itself, just restarted.
type fakeRestart struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	queries []string // the query of each restart request
	callers []string
}

func newFakeRestart(t *testing.T, restart func(w http.ResponseWriter)) *fakeRestart {
	f := &fakeRestart{t: t}
	f.srv = newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/debug/restart":
			caller, _ := mtls.PeerIdentity(r.TLS)
			f.mu.Lock()
			f.queries = append(f.queries, r.URL.RawQuery)
			f.callers = append(f.callers, caller.String())
			f.mu.Unlock()
			restart(w)
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/kms"):
			host := strings.TrimPrefix(f.srv.URL, "https://")
			status := &pb.ClusterStatusResponse{NodesUp: map[uint32]*pb.ServerStatusResponse{0: {Host: host, Role: "Leader"}}}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(frame(t, cmds.ClusterStatus, status))
		default:
			http.Error(w, "unexpected request", http.StatusBadRequest)
		}
	})
	return f
}

func (f *fakeRestart) host() string { return strings.TrimPrefix(f.srv.URL, "https://") }

func restartOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("{}"))
}

func TestRestartCluster(t *testing.T) {
	f := newFakeRestart(t, restartOK)
	// The first endpoint cannot be reached: the next one is asked.
	env := map[string]string{EnvServer: "https://127.0.0.1:1," + f.srv.URL, EnvAPIKey: testAPIKey}
	stdout, stderr, code := runCLI(t, env, "", "restart", "-k")
	if code != ExitOK || stdout != "Restarted every node of the cluster (through "+f.host()+")\n" {
		t.Fatalf("exit code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !reflect.DeepEqual(f.queries, []string{""}) {
		t.Errorf("restart requests with queries %q, want one without", f.queries)
	}
	if f.callers[0] != "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0" {
		t.Errorf("client identity %s, not the one of the API key", f.callers[0])
	}
}

func TestRestartHosts(t *testing.T) {
	f := newFakeRestart(t, restartOK)
	stdout, stderr, code := runCLI(t, fakeEnv(f.srv), "", "restart", f.host(), f.host(), "-k")
	if code != ExitOK || stdout != strings.Repeat("Restarted "+f.host()+"\n", 2) {
		t.Fatalf("exit code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if !reflect.DeepEqual(f.queries, []string{"self", "self"}) {
		t.Errorf("restart requests with queries %q, want two with self", f.queries)
	}
}

func TestRestartConnectionReset(t *testing.T) {
	// Reset after the 200: the server took on the restart.
	after := newFakeRestart(t, func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	if stdout, stderr, code := runCLI(t, fakeEnv(after.srv), "", "restart", "-k"); code != ExitOK {
		t.Errorf("reset after 200: exit code %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// Reset before any answer: a failure.
	before := newFakeRestart(t, func(w http.ResponseWriter) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	_, stderr, code := runCLI(t, fakeEnv(before.srv), "", "restart", before.host(), "-k")
	if code != ExitError || !strings.HasPrefix(stderr, "keep: ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("reset before an answer: exit code %d, stderr %q", code, stderr)
	}
}

func TestRestartError(t *testing.T) {
	f := newFakeRestart(t, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"message":"access denied: insufficient permissions"}`))
	})
	_, stderr, code := runCLI(t, fakeEnv(f.srv), "", "restart", "-k")
	if want := "keep: access denied: insufficient permissions (check MINIO_KMS_API_KEY and the enclave)\n"; code != ExitError || stderr != want {
		t.Errorf("exit code %d, stderr %q, want %q", code, stderr, want)
	}
}

func TestNotRestarted(t *testing.T) {
	s := &kms.ClusterStatusResponse{
		NodesUp: map[int]*kms.ServerStatusResponse{
			0: {Host: "n0:7373", UpTime: time.Second},
			1: {Host: "n1:7373", UpTime: time.Hour},
		},
		NodesDown: map[int]string{2: "n2:7373"},
	}
	tests := []struct {
		since time.Duration
		host  string
		want  []string
	}{
		{2 * time.Second, "", []string{"node 1 (n1:7373) has not restarted (up for 1h)", "node 2 (n2:7373) is down"}},
		{2 * time.Second, "n0:7373", nil},
		{time.Second, "n0:7373", []string{"node 0 (n0:7373) has not restarted (up for 1.0s)"}},
		{2 * time.Second, "n2:7373", []string{"node 2 (n2:7373) is down"}},
		{2 * time.Second, "elsewhere:7373", nil},
	}
	for _, tt := range tests {
		if got := notRestarted(s, tt.since, tt.host); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("notRestarted(%v, %q) = %q, want %q", tt.since, tt.host, got, tt.want)
		}
	}
}
