package testnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
)

// Client returns a kms-go client for the given endpoints (IP:PORT or
// https://IP:PORT) authenticated by key. It does not verify the server
// certificate (self-signed). With several endpoints the client balances
// and retries across them as kms-go does.
func Client(t testing.TB, key mtls.PrivateKey, endpoints ...string) *kms.Client {
	t.Helper()
	c, err := kms.NewClient(&kms.Config{
		Endpoints: endpoints,
		APIKey:    key,
		TLS:       &tls.Config{InsecureSkipVerify: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Client returns a kms-go client for this node authenticated by key.
func (n *Node) Client(t testing.TB, key mtls.PrivateKey) *kms.Client {
	t.Helper()
	return Client(t, key, n.Addr)
}

// RootClient is Client with the node's root API key.
func (n *Node) RootClient(t testing.TB) *kms.Client {
	t.Helper()
	if n.Root == nil {
		t.Fatalf("node %s has no root API key", n.Name)
	}
	return n.Client(t, n.Root)
}

// HTTPClient returns a plain HTTPS client for raw requests (HTTP/2 if the
// server offers it). With key != nil it presents the API key's
// certificate, made as kms-go makes it. It does not ask for compression on
// its own.
func HTTPClient(t testing.TB, key mtls.PrivateKey, timeout time.Duration) *http.Client {
	t.Helper()
	return httpClient(t, key, timeout, nil)
}

// HTTPClientProto is HTTPClient that speaks only HTTP/2 (h2) or only
// HTTP/1.1.
func HTTPClientProto(t testing.TB, key mtls.PrivateKey, h2 bool, timeout time.Duration) *http.Client {
	t.Helper()
	var protos http.Protocols
	if h2 {
		protos.SetHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	return httpClient(t, key, timeout, &protos)
}

func httpClient(t testing.TB, key mtls.PrivateKey, timeout time.Duration, protos *http.Protocols) *http.Client {
	t.Helper()
	conf := &tls.Config{InsecureSkipVerify: true}
	if key != nil {
		cert, err := kms.GenerateCertificate(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	rt := &http.Transport{TLSClientConfig: conf, DisableCompression: true, ForceAttemptHTTP2: protos == nil || protos.HTTP2(), Protocols: protos}
	t.Cleanup(rt.CloseIdleConnections)
	return &http.Client{Transport: rt, Timeout: timeout}
}

// DescribeErr spells an error for a test message: status and message for a
// kms.Error, type and text otherwise.
func DescribeErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	var e kms.Error
	if errors.As(err, &e) {
		return fmt.Sprintf("%d %q", e.Code, e.Err)
	}
	return fmt.Sprintf("%T %q", err, err.Error())
}

// StatusOf returns the HTTP status of a kms.Error, 0 for other errors and
// nil.
func StatusOf(err error) int {
	var e kms.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// ResentEmpty reports whether err is a server's answer to a request that
// arrived with none of the body it declared: the mark of kms-go's balancer
// (kms v0.5.x, internal/https.LoadBalancer), which after a transport error
// resends the request to its next host with the body the failed attempt
// already consumed. It happens when a stopping node's GOAWAY crosses a new
// request: net/http retries that request on a fresh connection to the same
// node, whose refused handshake ends the attempt. The server then proves
// it never saw the request, so a caller may send it again.
func ResentEmpty(err error) bool {
	var e kms.Error
	return errors.As(err, &e) && e.Code == http.StatusBadRequest &&
		strings.Contains(e.Err, "declared a Content-Length of") &&
		strings.Contains(e.Err, "but only wrote 0 bytes")
}

// Result is the outcome of a process run to completion.
type Result struct {
	Args           []string
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("keep %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.Args, " "), r.Code, r.Stdout, r.Stderr)
}

// Run runs keep with args and env to completion (30 s at most) and returns
// its output and exit code. env is the whole environment; start from
// BaseEnv.
func Run(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	return RunIn(t, "", env, args...)
}

// RunIn is Run in the working directory dir ("": the test's).
func RunIn(t testing.TB, dir string, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Env = env
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("keep %s did not exit within 30s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), o.String(), e.String())
	}
	r := Result{Args: args, Stdout: o.String(), Stderr: e.String()}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("keep %s: %v", strings.Join(args, " "), err)
		}
		r.Code = ee.ExitCode()
	}
	return r
}

// CLI runs a keep client command against servers (https://… endpoints,
// joined with commas as MINIO_KMS_SERVER) with apiKey (MINIO_KMS_API_KEY).
func CLI(t testing.TB, servers []string, apiKey string, args ...string) Result {
	t.Helper()
	env := append(BaseEnv(t.TempDir()), "MINIO_KMS_SERVER="+strings.Join(servers, ","))
	if apiKey != "" {
		env = append(env, "MINIO_KMS_API_KEY="+apiKey)
	}
	return Run(t, env, args...)
}

// HasCommand reports whether the keep binary under test lists the command
// name in keep --help.
func HasCommand(t testing.TB, name string) bool {
	t.Helper()
	r := Run(t, BaseEnv(""), "--help")
	return regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(name) + `\s`).MatchString(r.Stdout)
}

// SetSettings sets cluster-wide settings ("name=value") with the node's
// root API key, as `keep config set` does, and fails the test if they are
// refused.
func (n *Node) SetSettings(t testing.TB, settings ...string) {
	t.Helper()
	r := CLI(t, []string{n.Endpoint()}, n.APIKey, append([]string{"config", "set", "-k"}, settings...)...)
	if r.Code != 0 {
		t.Fatalf("%s", r)
	}
}

// DeleteAtOnce makes deletions of the node's cluster immediate
// (keys.deletion_window=0s), for tests of what a deletion does rather than
// of its window.
func (n *Node) DeleteAtOnce(t testing.TB) { n.SetSettings(t, "keys.deletion_window=0s") }
