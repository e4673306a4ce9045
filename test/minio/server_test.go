package miniotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/keep-kms/keep/test/testnode"
)

var showLogs = flag.Bool("minio.logs", false, "log the output of MinIO and Keep also when a test passes")

// minioStartTimeout bounds how long MinIO may take to answer its
// readiness probe with 200 after it was started.
const minioStartTimeout = 2 * time.Minute

// minioServer is one MinIO server process on a single drive (a fresh
// directory), listening on a fresh 127.0.0.x address, plain HTTP. It can be
// stopped and started again on the same drive.
type minioServer struct {
	t        testing.TB
	name     string
	addr     string // S3 API, IP:PORT
	console  string // console address (the console is off)
	dir      string // the drive
	certsDir string // --certs-dir: CAs/ holds the CA that signed Keep's certificates
	home     string
	kmsEnv   []string // MINIO_KMS_* variables
	user     string
	password string

	*testnode.Process // the MinIO process: Kill, PID, Logs, …
}

// newMinIO returns a MinIO server that is not started yet, with the KMS
// configured by kmsEnv and ca (if not nil) in its certs dir's CAs/. The
// process is killed when the test ends and its output logged if the test
// failed.
func newMinIO(t testing.TB, name string, ca *testCA, kmsEnv ...string) *minioServer {
	t.Helper()
	addr := testnode.AllocAddr(t)
	m := &minioServer{
		t:        t,
		name:     name,
		addr:     addr,
		console:  testnode.FreePort(t, testnode.IPOf(addr)),
		dir:      t.TempDir(),
		certsDir: t.TempDir(),
		home:     t.TempDir(),
		Process:  testnode.NewProcess("minio "+name, t.TempDir()),
		kmsEnv:   kmsEnv,
		user:     "keeptest",
		password: randomHex(t, 16),
	}
	if ca != nil {
		pem, err := os.ReadFile(ca.File)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(m.certsDir, "CAs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(m.certsDir, "CAs", "keep-ca.crt"), pem, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		m.Kill()
		if t.Failed() || *showLogs {
			t.Logf("logs of MinIO %s (%s, drive %s, env %q):\n%s", m.name, m.addr, m.dir, m.kmsEnv, m.Logs())
		}
	})
	return m
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// args is the command line of the server.
func (m *minioServer) args() []string {
	return []string{"server", m.dir, "--address", m.addr, "--console-address", m.console, "--certs-dir", m.certsDir}
}

// env is the environment of the server.
func (m *minioServer) env() []string {
	env := append(testnode.BaseEnv(m.home),
		"MINIO_ROOT_USER="+m.user,
		"MINIO_ROOT_PASSWORD="+m.password,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	return append(env, m.kmsEnv...)
}

// start starts the server and waits until its readiness probe answers 200
// (which needs the KMS) and its S3 API serves the root user: the probe
// may answer 200 while S3 requests still get "Server not initialized yet".
// It returns an error with the server's output if the process exits first
// or is not ready in time.
func (m *minioServer) start() error {
	s3, err := minio.New(m.addr, &minio.Options{Creds: credentials.NewStaticV4(m.user, m.password, ""), MaxRetries: 1})
	if err != nil {
		return err
	}
	cmd := exec.Command(minioBinary, m.args()...)
	cmd.Env = m.env()
	cmd.SysProcAttr = sysProcAttr()
	done, err := m.Process.Start(cmd, true)
	if err != nil {
		return err
	}

	deadline := time.Now().Add(minioStartTimeout)
	for {
		code, err := m.ready(10 * time.Second)
		if err == nil && code == http.StatusOK {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = s3.ListBuckets(ctx)
			cancel()
			if err == nil {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("minio %s exited (code %d) before it was ready; output:\n%s", m.name, m.ExitCode(), testnode.Tail(m.Stdout(), 16<<10))
		default:
		}
		if time.Now().After(deadline) {
			m.Kill()
			return fmt.Errorf("minio %s not ready within %v (last probe: %d %v); output:\n%s", m.name, minioStartTimeout, code, err, testnode.Tail(m.Stdout(), 16<<10))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (m *minioServer) mustStart() {
	m.t.Helper()
	if err := m.start(); err != nil {
		m.t.Fatal(err)
	}
}

// stop sends SIGTERM and waits for the process to exit, killing it after
// 30 seconds.
func (m *minioServer) stop() {
	if !m.Process.Stop(30 * time.Second) {
		m.t.Logf("minio %s did not exit within 30s of SIGTERM; killed it", m.name)
	}
}

// restart stops the server and starts it again on the same drive.
func (m *minioServer) restart() {
	m.t.Helper()
	m.stop()
	m.mustStart()
}

// ready asks /minio/health/ready, which has MinIO generate a data key with
// its default key, and returns the HTTP status.
func (m *minioServer) ready(timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.addr+"/minio/health/ready", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// client returns a minio-go client for the server; maxRetries 0 keeps
// minio-go's default (10), 1 disables retries.
func (m *minioServer) client(maxRetries int) *minio.Client {
	m.t.Helper()
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		m.t.Fatal(err)
	}
	tr.MaxIdleConnsPerHost = 256
	m.t.Cleanup(tr.CloseIdleConnections)
	c, err := minio.New(m.addr, &minio.Options{
		Creds:      credentials.NewStaticV4(m.user, m.password, ""),
		Transport:  tr,
		MaxRetries: maxRetries,
	})
	if err != nil {
		m.t.Fatal(err)
	}
	return c
}

// waitReady waits until MinIO's readiness probe, which needs the KMS,
// answers 200 again (after Keep was restarted).
func (m *minioServer) waitReady(t *testing.T) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	for {
		code, err := m.ready(90 * time.Second)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/minio/health/ready not 200 within 2m of Keep's restart: %d %v", code, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("MinIO ready %v after Keep started again", time.Since(start).Round(time.Millisecond))
}
