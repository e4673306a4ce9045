package testnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"

	"github.com/keep-kms/keep/internal/hsm"
)

// ReadyLine is the last line of the start-up banner.
const ReadyLine = "=> Server is up and running..."

// DefaultStartTimeout bounds how long a node may take to print ReadyLine.
const DefaultStartTimeout = 30 * time.Second

// Options configure a node. The zero value is a node on a fresh loopback
// address with a fresh data directory and a fresh HSM key.
type Options struct {
	Name         string        // label in logs; default the address
	Binary       string        // keep binary; default the one under test (Binary)
	Addr         string        // --address IP:PORT; default AllocAddr
	Host         string        // --host HOST:PORT; default Addr; "-" leaves the flag out
	Dir          string        // data directory; default a new t.TempDir()
	HSMKey       string        // MINIO_KMS_HSM_KEY; default NewHSMKey; "-" leaves it unset
	Config       string        // --config FILE, if set
	Dev          bool          // --dev instead of DIR
	NoAPIKey     bool          // the banner is not expected to print a k1: key
	ExtraArgs    []string      // more arguments of keep server
	ExtraEnv     []string      // more environment (KEY=VALUE)
	StartTimeout time.Duration // default DefaultStartTimeout
}

// Node is one keep server process, which may be started, stopped and
// started again on the same data directory. The exported fields are the
// command line of the next start: a test may change them between runs
// (e.g. Host, to start a node with another --host).
type Node struct {
	Name      string
	Binary    string // empty: the keep under test
	Addr      string
	Host      string
	Dir       string
	HSMKey    string
	Config    string
	Dev       bool
	NoAPIKey  bool
	ExtraArgs []string
	ExtraEnv  []string

	APIKey string          // root API key from the banner, or derived from HSMKey when the banner has none (restarts), k1:…
	Root   mtls.PrivateKey // parsed APIKey; nil if NoAPIKey
	Banner string          // stdout up to and including the first ReadyLine

	*Process // the keep server process: Running, PID, Kill, Wait, Stdout, Logs, …

	t            testing.TB
	startTimeout time.Duration
	home         string
}

// StartError is returned by Node.Start when the process exited, or did not
// come up in time.
type StartError struct {
	Args           []string
	Code           int // exit code; -1 if it was killed (timeout) or by a signal
	Stdout, Stderr string
	Timeout        bool
}

func (e *StartError) Error() string {
	what := fmt.Sprintf("exited with code %d before it was up", e.Code)
	if e.Timeout {
		what = fmt.Sprintf("did not print %q in time", ReadyLine)
	}
	return fmt.Sprintf("keep %s %s\nstdout:\n%s\nstderr:\n%s", strings.Join(e.Args, " "), what, e.Stdout, e.Stderr)
}

// New returns a node that is not started yet. The process is killed when
// the test ends, and its output is logged if the test failed.
func New(t testing.TB, opts Options) *Node {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = AllocAddr(t)
	}
	if opts.Host == "" {
		opts.Host = opts.Addr
	}
	if opts.Dir == "" && !opts.Dev {
		opts.Dir = t.TempDir()
	}
	if opts.HSMKey == "" && !opts.Dev {
		opts.HSMKey = NewHSMKey(t)
	}
	if opts.Name == "" {
		opts.Name = opts.Addr
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	n := &Node{
		Name:         opts.Name,
		Binary:       opts.Binary,
		Addr:         opts.Addr,
		Host:         opts.Host,
		Dir:          opts.Dir,
		HSMKey:       opts.HSMKey,
		Config:       opts.Config,
		Dev:          opts.Dev,
		NoAPIKey:     opts.NoAPIKey,
		ExtraArgs:    opts.ExtraArgs,
		ExtraEnv:     opts.ExtraEnv,
		t:            t,
		startTimeout: opts.StartTimeout,
		home:         t.TempDir(),
		Process:      NewProcess("node "+opts.Name, t.TempDir()),
	}
	t.Cleanup(func() {
		n.Kill()
		if race := n.RaceReports(); race != "" {
			t.Errorf("the race detector reported in node %s:\n%s", n.Name, Tail(race, 32<<10))
		}
		if t.Failed() {
			n.DumpLogs(t)
		}
	})
	return n
}

// Start starts a node and waits until it is up; the test fails if it does
// not come up.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	n := New(t, opts)
	n.MustStart()
	return n
}

// Args returns the arguments of keep for the next start.
func (n *Node) Args() []string {
	args := []string{"server"}
	if n.Dev {
		args = append(args, "--dev")
	} else {
		args = append(args, n.Dir)
	}
	args = append(args, "--address", n.Addr)
	if n.Host != "-" {
		args = append(args, "--host", n.Host)
	}
	if n.Config != "" {
		args = append(args, "--config", n.Config)
	}
	return append(args, n.ExtraArgs...)
}

// Env returns the environment of the next start.
func (n *Node) Env() []string {
	env := BaseEnv(n.home)
	if n.HSMKey != "" && n.HSMKey != "-" {
		env = append(env, "MINIO_KMS_HSM_KEY="+n.HSMKey)
	}
	return append(env, n.ExtraEnv...)
}

// Endpoint is the node's client endpoint, https://ADDR.
func (n *Node) Endpoint() string { return "https://" + n.Addr }

// IP is the IP the node listens on.
func (n *Node) IP() string { return IPOf(n.Addr) }

// MustStart is Start that fails the test on error.
func (n *Node) MustStart() {
	n.t.Helper()
	if err := n.Start(); err != nil {
		n.t.Fatal(err)
	}
}

// Start (re)starts the server process with the node's current settings and
// waits for the banner. If the process exits before it is up, Start returns
// a *StartError with its exit code and output; if it does not come up in
// time, Start kills it and returns a *StartError with Timeout set.
func (n *Node) Start() error {
	args := n.Args()
	bin := n.Binary
	if bin == "" {
		bin = binaryOrEmpty(n.t)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = n.Env()
	done, err := n.Process.Start(cmd, false)
	if err != nil {
		return err
	}

	deadline := time.Now().Add(n.startTimeout)
	for {
		out := n.Stdout()
		if i := strings.Index(out, ReadyLine); i >= 0 {
			n.Banner = out[:i+len(ReadyLine)]
			break
		}
		select {
		case <-done:
			return &StartError{Args: args, Code: n.ExitCode(), Stdout: n.Stdout(), Stderr: n.Stderr()}
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.Kill()
			return &StartError{Args: args, Code: -1, Timeout: true, Stdout: n.Stdout(), Stderr: n.Stderr()}
		}
	}
	if n.NoAPIKey {
		return nil
	}
	key, err := BannerAPIKey(n.Banner)
	if err != nil && !n.Dev {
		// Only the first start of a cluster prints the key; it is the
		// HSM key's, as keep identity HSM-KEY computes it.
		key, err = HSMRootAPIKey(n.HSMKey)
	}
	if err != nil {
		return fmt.Errorf("%w\nbanner:\n%s", err, n.Banner)
	}
	if n.APIKey != "" && key != n.APIKey && !n.Dev {
		return fmt.Errorf("root API key changed across restart: %s then %s", n.APIKey, key)
	}
	root, err := mtls.ParsePrivateKey(key)
	if err != nil {
		return fmt.Errorf("banner API key %q: %w", key, err)
	}
	n.APIKey, n.Root = key, root
	return nil
}

func binaryOrEmpty(t testing.TB) string {
	p, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var apiKeyRE = regexp.MustCompile(`k1:[A-Za-z0-9_-]{43}`)

// BannerAPIKey finds the k1: key on the banner line containing "API Key".
func BannerAPIKey(banner string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(banner))
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, "API Key")
		if i < 0 {
			continue
		}
		if k := apiKeyRE.FindString(line[i:]); k != "" {
			return k, nil
		}
	}
	return "", errors.New("banner has no line `API Key k1:…`")
}

// HSMRootAPIKey returns the k1: root API key derived from an HSM key
// (hsm:aes256:…): what the banner of a cluster's first start prints.
func HSMRootAPIKey(hsmKey string) (string, error) {
	h, err := hsm.ParseSoftKey(hsmKey)
	if err != nil {
		return "", fmt.Errorf("the banner shows no API key, and the HSM key does not parse: %w", err)
	}
	defer h.Close()
	k, err := hsm.RootAPIKey(context.Background(), h)
	if err != nil {
		return "", fmt.Errorf("failed to derive the root API key: %w", err)
	}
	return k.String(), nil
}

// Stop sends SIGTERM and waits for the process to exit; after 15 seconds it
// kills it and fails the test.
func (n *Node) Stop() {
	n.t.Helper()
	if !n.Process.Stop(15 * time.Second) {
		n.t.Errorf("%s: keep server did not exit within 15s of SIGTERM", n.Name)
	}
}

// Restart stops the node with SIGTERM and starts it again; the test fails
// if it does not come up.
func (n *Node) Restart() {
	n.t.Helper()
	n.Stop()
	n.MustStart()
}

// Ups counts the ReadyLines the current process has printed: one per start,
// plus one per restart in place (re-exec).
func (n *Node) Ups() int {
	return strings.Count(n.Stdout(), ReadyLine)
}

// WaitUps waits until the current process has printed ReadyLine at least k
// times.
func (n *Node) WaitUps(k int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if got := n.Ups(); got >= k {
			return nil
		}
		if !n.Running() {
			return fmt.Errorf("%s: process exited (code %d) after %d starts, want %d\nstderr:\n%s", n.Name, n.ExitCode(), n.Ups(), k, Tail(n.Stderr(), 4096))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d starts within %v, want %d", n.Name, n.Ups(), timeout, k)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DumpLogs logs every stdout and stderr file of the node.
func (n *Node) DumpLogs(t testing.TB) {
	t.Logf("logs of node %s (--address %s --host %s, dir %s):\n%s", n.Name, n.Addr, n.Host, n.Dir, n.Logs())
}
