package testnode

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// OldBinary returns a keep binary built from an earlier commit of the
// repository, for tests that prove data written by an earlier version
// still works. It is cached in os.UserCacheDir()/keep-test/keep-COMMIT;
// the test is skipped when the commit cannot be extracted (no git
// history).
func OldBinary(t testing.TB, commit string) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(cache, "keep-test", "keep-"+commit)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	archive := exec.Command("sh", "-c", "git -C \"$1\" archive "+commit+" | tar -x -C \"$2\"", "sh", root, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Skipf("cannot extract commit %s: %v\n%s", commit, err, out)
	}
	build := exec.Command("go", "build", "-o", bin, "./cmd/keep")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the keep of commit %s: %v\n%s", commit, err, out)
	}
	return bin
}

// StartWith starts the server n once with the binary bin instead of the
// one under test (Start with Binary set): its next start runs the one
// under test again.
func (n *Node) StartWith(t testing.TB, bin string) {
	t.Helper()
	n.Binary = bin
	defer func() { n.Binary = "" }()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
}
