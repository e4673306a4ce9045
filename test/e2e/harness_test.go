// Package e2e runs the keep binary as a user would: it builds it once, starts
// real server processes on 127.0.0.x loopback addresses and talks to them with
// the official MinIO KMS client (github.com/minio/kms-go/kms), with raw HTTPS
// and with the keep CLI.
//
// Set KEEP_BINARY to test a prebuilt binary instead of building ./cmd/keep.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
)

// keepBin is the path of the keep binary under test, set by TestMain.
var keepBin string

// readyLine is the last line of the start-up banner.
const readyLine = "=> Server is up and running..."

// startTimeout bounds how long a node may take to print readyLine.
const startTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if bin := os.Getenv("KEEP_BINARY"); bin != "" {
		keepBin = bin
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "keep-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	keepBin = filepath.Join(tmp, "keep")
	build := exec.Command("go", "build", "-o", keepBin, "./cmd/keep")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/keep: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// repoRoot returns the directory holding the module's go.mod.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if mod := strings.TrimSpace(string(out)); mod != "" && mod != os.DevNull {
			return filepath.Dir(mod), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found")
		}
		dir = parent
	}
}

// ---------------------------------------------------------------------------
// Addresses and keys

var nextIP atomic.Uint32

// allocAddr returns a free IP:PORT on a loopback address 127.0.0.x, x in
// [2, 250], different for every call in this process.
func allocAddr(t testing.TB) string {
	t.Helper()
	for range 50 {
		x := 2 + (nextIP.Add(1)-1)%249
		ip := fmt.Sprintf("127.0.0.%d", x)
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	t.Fatal("no free loopback address")
	return ""
}

// newHSMKey returns a fresh soft HSM key hsm:aes256:<base64 of 32 bytes>.
func newHSMKey(t testing.TB) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "hsm:aes256:" + base64.StdEncoding.EncodeToString(b[:])
}

// newAPIKey returns a fresh k1: API key.
func newAPIKey(t testing.TB) mtls.PrivateKey {
	t.Helper()
	k, err := mtls.GenerateKeyEdDSA(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func parseAPIKey(t testing.TB, s string) mtls.PrivateKey {
	t.Helper()
	k, err := mtls.ParsePrivateKey(s)
	if err != nil {
		t.Fatalf("parse API key %q: %v", s, err)
	}
	return k
}

// baseEnv is the environment of every process the tests start: the test's
// own environment without anything keep or minkms would read.
func baseEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "MINIO_"), strings.HasPrefix(k, "KEEP_"), k == "HOME",
			k == "HTTPS_PROXY", k == "https_proxy", k == "HTTP_PROXY", k == "http_proxy",
			k == "NO_PROXY", k == "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	if home != "" {
		env = append(env, "HOME="+home)
	}
	return env
}

// ---------------------------------------------------------------------------
// Nodes

type nodeOpts struct {
	Addr      string   // IP:PORT for --address and --host; default allocAddr
	Dir       string   // data directory; default a new t.TempDir()
	HSMKey    string   // MINIO_KMS_HSM_KEY; default newHSMKey; "-" = unset
	Config    string   // --config FILE, if set
	Dev       bool     // --dev instead of DIR
	NoAPIKey  bool     // the banner is not expected to print a k1: key
	ExtraArgs []string // more flags
	ExtraEnv  []string // more environment
}

type node struct {
	t      testing.TB
	opts   nodeOpts
	Addr   string // IP:PORT
	Dir    string
	HSMKey string
	APIKey string          // root API key from the banner, k1:…
	Root   mtls.PrivateKey // parsed APIKey, nil if NoAPIKey
	Banner string          // stdout up to and including readyLine
	home   string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	lastExit int // exit code of the last process that ended, -1 if killed by a signal
	starts   int
	logs     []string // every stdout/stderr file written so far
}

var apiKeyRE = regexp.MustCompile(`k1:[A-Za-z0-9_-]{43}`)

// startNode starts keep server and waits until it is up. The process is
// killed when the test ends; its output is logged if the test failed.
func startNode(t testing.TB, opts nodeOpts) *node {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = allocAddr(t)
	}
	if opts.Dir == "" && !opts.Dev {
		opts.Dir = t.TempDir()
	}
	if opts.HSMKey == "" && !opts.Dev {
		opts.HSMKey = newHSMKey(t)
	}
	n := &node{
		t:      t,
		opts:   opts,
		Addr:   opts.Addr,
		Dir:    opts.Dir,
		HSMKey: opts.HSMKey,
		home:   t.TempDir(),
	}
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			n.dumpLogs()
		}
	})
	n.start()
	return n
}

func (n *node) args() []string {
	args := []string{"server"}
	if n.opts.Dev {
		args = append(args, "--dev")
	} else {
		args = append(args, n.Dir)
	}
	args = append(args, "--address", n.Addr, "--host", n.Addr)
	if n.opts.Config != "" {
		args = append(args, "--config", n.opts.Config)
	}
	return append(args, n.opts.ExtraArgs...)
}

func (n *node) env() []string {
	env := baseEnv(n.home)
	if n.HSMKey != "" && n.HSMKey != "-" {
		env = append(env, "MINIO_KMS_HSM_KEY="+n.HSMKey)
	}
	return append(env, n.opts.ExtraEnv...)
}

// start (re)starts the server process on the same DIR, address and HSM key
// and waits for the banner.
func (n *node) start() {
	n.t.Helper()
	n.mu.Lock()
	if n.cmd != nil && !n.exited() {
		n.mu.Unlock()
		n.t.Fatal("start: node is still running")
	}
	n.starts++
	logDir := n.t.TempDir()
	stdoutPath := filepath.Join(logDir, fmt.Sprintf("stdout.%d.log", n.starts))
	stderrPath := filepath.Join(logDir, fmt.Sprintf("stderr.%d.log", n.starts))
	stdout, err1 := os.Create(stdoutPath)
	stderr, err2 := os.Create(stderrPath)
	if err := errors.Join(err1, err2); err != nil {
		n.mu.Unlock()
		n.t.Fatal(err)
	}
	n.logs = append(n.logs, stdoutPath, stderrPath)

	cmd := exec.Command(keepBin, n.args()...)
	cmd.Env = n.env()
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		n.t.Fatalf("start %s: %v", keepBin, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	go func() {
		err := cmd.Wait()
		stdout.Close()
		stderr.Close()
		n.mu.Lock()
		n.waitErr = err
		n.lastExit = cmd.ProcessState.ExitCode()
		n.mu.Unlock()
		close(done)
	}()
	n.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		out, _ := os.ReadFile(stdoutPath)
		if i := bytes.Index(out, []byte(readyLine)); i >= 0 {
			n.Banner = string(out[:i+len(readyLine)])
			break
		}
		select {
		case <-done:
			n.t.Fatalf("keep %s exited before it was up: %v\nstdout:\n%s\nstderr:\n%s",
				strings.Join(n.args(), " "), n.waitErr, out, readFile(stderrPath))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("keep %s: no %q within %v\nstdout:\n%s\nstderr:\n%s",
				strings.Join(n.args(), " "), readyLine, startTimeout, out, readFile(stderrPath))
		}
	}
	if n.opts.NoAPIKey {
		return
	}
	key, err := bannerAPIKey(n.Banner)
	if err != nil {
		n.t.Fatalf("%v\nbanner:\n%s", err, n.Banner)
	}
	if n.APIKey != "" && key != n.APIKey && !n.opts.Dev {
		n.t.Fatalf("root API key changed across restart: %s then %s", n.APIKey, key)
	}
	n.APIKey = key
	n.Root = parseAPIKey(n.t, key)
}

// bannerAPIKey finds the k1: key on the banner line containing "API Key".
func bannerAPIKey(banner string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(banner))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "API Key") {
			continue
		}
		if k := apiKeyRE.FindString(line[strings.Index(line, "API Key"):]); k != "" {
			return k, nil
		}
	}
	return "", errors.New("banner has no line `API Key k1:…`")
}

func (n *node) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the process to exit.
func (n *node) stop() {
	n.t.Helper()
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		n.t.Errorf("keep server did not exit within 15s of SIGTERM")
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (n *node) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Kill()
	<-done
}

// restart stops the node with SIGTERM and starts it again on the same DIR.
func (n *node) restart() {
	n.t.Helper()
	n.stop()
	n.start()
}

// exitCode is the exit code of the last process that ended, -1 if it was
// killed by a signal.
func (n *node) exitCode() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lastExit
}

func (n *node) dumpLogs() {
	n.mu.Lock()
	logs := append([]string(nil), n.logs...)
	n.mu.Unlock()
	for _, p := range logs {
		n.t.Logf("==> %s (node %s)\n%s", filepath.Base(p), n.Addr, readFile(p))
	}
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// host returns the 127.0.0.x part of the node's address.
func (n *node) host() string {
	h, _, _ := net.SplitHostPort(n.Addr)
	return h
}

// runServer runs keep with args to completion (it is expected to fail) and
// returns its output and exit code.
func runServer(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, keepBin, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("keep %s did not exit within 30s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), o.String(), e.String())
	}
	code = 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("keep %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return o.String(), e.String(), code
}

// ---------------------------------------------------------------------------
// Clients

// client returns a kms-go client for the node authenticated by key. It does
// not verify the server certificate (self-signed).
func client(t testing.TB, n *node, key mtls.PrivateKey) *kms.Client {
	t.Helper()
	c, err := kms.NewClient(&kms.Config{
		Endpoints: []string{n.Addr},
		APIKey:    key,
		TLS:       &tls.Config{InsecureSkipVerify: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rootClient is client with the node's root API key.
func rootClient(t testing.TB, n *node) *kms.Client {
	t.Helper()
	if n.Root == nil {
		t.Fatal("node has no root API key")
	}
	return client(t, n, n.Root)
}

// httpClient returns a plain HTTPS client for raw requests. With key != nil
// it presents the API key's certificate; h2 selects HTTP/2 or HTTP/1.1. It
// never asks for compression on its own.
func httpClient(t testing.TB, key mtls.PrivateKey, h2 bool) *http.Client {
	t.Helper()
	conf := &tls.Config{InsecureSkipVerify: true}
	if key != nil {
		cert, err := kms.GenerateCertificate(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	var protos http.Protocols
	if h2 {
		protos.SetHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	rt := &http.Transport{
		TLSClientConfig:    conf,
		DisableCompression: true,
		ForceAttemptHTTP2:  h2,
		Protocols:          &protos,
	}
	t.Cleanup(rt.CloseIdleConnections)
	return &http.Client{Transport: rt, Timeout: 60 * time.Second}
}

type reply struct {
	Status int
	Header http.Header
	Body   []byte
	Proto  string
	Length int64 // resp.ContentLength
}

// do sends one raw request and reads the whole reply.
func do(t testing.TB, hc *http.Client, method, url string, body []byte, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: buf.Bytes(), Proto: resp.Proto, Length: resp.ContentLength}
}

// ---------------------------------------------------------------------------
// Frames (spec §3.1)

type frame struct {
	Cmd     cmds.Command
	Payload []byte
}

func appendFrame(b []byte, cmd cmds.Command, payload []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(cmd))
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func parseFrames(b []byte) ([]frame, error) {
	var fs []frame
	for len(b) > 0 {
		if len(b) < 6 {
			return fs, fmt.Errorf("frame header truncated: %d bytes left", len(b))
		}
		c := cmds.Command(binary.BigEndian.Uint16(b))
		l := binary.BigEndian.Uint32(b[2:])
		if uint64(len(b)-6) < uint64(l) {
			return fs, fmt.Errorf("frame %s: length %d > %d bytes left", c, l, len(b)-6)
		}
		fs = append(fs, frame{Cmd: c, Payload: b[6 : 6+l]})
		b = b[6+l:]
	}
	return fs, nil
}

// ---------------------------------------------------------------------------
// Assertions

// errIs fails the test unless err matches want exactly (status and message).
func errIs(t testing.TB, err error, want kms.Error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %s, want %d %q", what, describeErr(err), want.Code, want.Err)
	}
}

// errStatus fails the test unless err is a kms.Error with the given status.
func errStatus(t testing.TB, err error, status int, what string) {
	t.Helper()
	var e kms.Error
	if !errors.As(err, &e) || e.Code != status {
		t.Errorf("%s: got error %s, want HTTP status %d", what, describeErr(err), status)
	}
}

func noErr(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %s", what, describeErr(err))
	}
}

func describeErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	var e kms.Error
	if errors.As(err, &e) {
		return fmt.Sprintf("%d %q", e.Code, e.Err)
	}
	return fmt.Sprintf("%T %q", err, err.Error())
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
