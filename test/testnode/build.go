// Package testnode runs the keep binary for tests the way a user does: it
// builds ./cmd/keep once per test process (Main, Binary), starts real server
// processes on 127.0.0.x loopback addresses (Start, New; Options), stops
// (SIGTERM), kills (SIGKILL) and restarts them (Node.Stop, Kill, Restart,
// MustStart), reads the root API key from their banner (BannerAPIKey) or,
// on restarts, whose banner omits it, derives it from the HSM key
// (HSMRootAPIKey), and gives kms-go and raw HTTPS clients (Client,
// Node.Client, RootClient, HTTPClient, HTTPClientProto), runs keep to
// completion (Run, CLI) and makes addresses and keys (AllocAddr, AllocIP,
// FreePort, NewHSMKey, NewAPIKey, ParseAPIKey, BaseEnv). Start returns a
// *StartError (exit code, stdout, stderr) for a node that is expected to
// fail; Ups/WaitUps follow a process that re-executes itself; PID, Stdout
// and Stderr look at the running process.
//
// It is an ordinary (non-test) package so that every end-to-end suite can
// share it: test/e2e and test/cluster use it.
//
// Set KEEP_BINARY to test a prebuilt binary instead of building ./cmd/keep.
package testnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binTmp  string     // where buildKeep puts binaries; removed by cleanup
	binMu   sync.Mutex // guards binTmp
)

// Main is a TestMain helper: it builds the keep binary (or takes
// KEEP_BINARY), runs the tests and removes the build. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(testnode.Main(m)) }
func Main(m *testing.M) int {
	if _, err := build(); err != nil {
		fmt.Fprintln(os.Stderr, "testnode:", err)
		return 1
	}
	defer cleanup()
	return m.Run()
}

// Binary returns the path of the keep binary under test, building it on
// first use. Tests that do not use Main still get one build per process;
// the build is then left in the system's temporary directory.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func build() (string, error) {
	binOnce.Do(func() {
		if bin := os.Getenv("KEEP_BINARY"); bin != "" {
			binPath = bin
			return
		}
		binPath, binErr = buildKeep("keep")
	})
	return binPath, binErr
}

var (
	fpOnce sync.Once
	fpPath string
	fpErr  error
)

// FailpointBinary returns a keep binary built with the tag failpoints (see
// internal/failpoint), whose crash points GOFAIL_FAILPOINTS and
// GOFAIL_HTTP arm, building it on first use. KEEP_BINARY does not replace
// it: a release binary has no failpoints.
func FailpointBinary(t testing.TB) string {
	t.Helper()
	fpOnce.Do(func() { fpPath, fpErr = buildKeep("keep-failpoints", "-tags", "failpoints") })
	if fpErr != nil {
		t.Fatal(fpErr)
	}
	return fpPath
}

// buildKeep builds ./cmd/keep with the extra go build arguments into the
// directory that cleanup removes, under the race detector if the tests
// run under it.
func buildKeep(name string, extra ...string) (string, error) {
	binMu.Lock()
	defer binMu.Unlock()
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	if binTmp == "" {
		if binTmp, err = os.MkdirTemp("", "keep-bin-"); err != nil {
			return "", err
		}
	}
	p := filepath.Join(binTmp, name)
	args := append([]string{"build", "-o", p}, extra...)
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/keep")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return p, nil
}

func cleanup() {
	binMu.Lock()
	defer binMu.Unlock()
	if binTmp != "" {
		os.RemoveAll(binTmp)
	}
}

// RepoRoot returns the directory holding the module's go.mod.
func RepoRoot() (string, error) {
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

// RaceEnabled reports whether these tests, and the keep they build, run
// under the race detector, which multiplies a process's memory: tests that
// bound a node's memory bound it accordingly.
func RaceEnabled() bool { return raceEnabled }
