// Package aptget installs the Debian packages of outside tools that tests
// need (SoftHSM2, bash-completion, a C cross compiler) when they are
// missing, so that on CI, which runs as root on a clean Debian machine, the
// tests really run instead of skipping. Elsewhere a missing tool fails the
// test with the package to install.
package aptget

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu      sync.Mutex // one apt-get at a time: dpkg takes a lock
	updated bool
	failed  = map[string]error{} // packages whose install failed, not retried
)

// Need makes sure probe exists, a command on the PATH or, if it is an
// absolute path, a file, installing the Debian package pkg if it does not
// and the process runs as root. The test fails if probe cannot be had.
func Need(t testing.TB, probe, pkg string) {
	t.Helper()
	if err := Ensure(probe, pkg); err != nil {
		t.Fatal(err)
	}
}

// Ensure is Need for callers that report the error themselves.
func Ensure(probe, pkg string) error {
	if present(probe) {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s not found: install %s (Debian/Ubuntu: apt-get install %s) to run this test", probe, pkg, pkg)
	}
	mu.Lock()
	defer mu.Unlock()
	if err, ok := failed[pkg]; ok {
		return err
	}
	err := install(pkg)
	if err == nil && !present(probe) {
		err = fmt.Errorf("%s installed, but %s is still missing", pkg, probe)
	}
	if err != nil {
		failed[pkg] = err
	}
	return err
}

func present(probe string) bool {
	if filepath.IsAbs(probe) {
		_, err := os.Stat(probe)
		return err == nil
	}
	_, err := exec.LookPath(probe)
	return err == nil
}

// install runs apt-get update, once per process, and apt-get install pkg.
func install(pkg string) error {
	steps := [][]string{{"install", "-y", pkg}}
	if !updated {
		steps = append([][]string{{"update"}}, steps...)
	}
	for _, args := range steps {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, lastLine(out))
		}
		if args[0] == "update" {
			updated = true
		}
	}
	return nil
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}
