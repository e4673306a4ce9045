package testnode

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// DirDigest maps each regular file under dir to the SHA-256 of its
// contents: what a test compares to tell that a refused start changed
// nothing on disk.
func DirDigest(t testing.TB, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[path] = sha256.Sum256(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// StartRefused starts n, which must refuse to start as the issue asks of
// every start-up failure: a non-zero exit, one line on stderr, and no file
// of its data directory changed. It returns that line, and fails the test
// for each rule broken. If the node comes up instead, started (if not nil)
// runs while it is up, to tell what it would grant; then the node is
// stopped and the test ends.
func (n *Node) StartRefused(t testing.TB, started func()) string {
	t.Helper()
	before := DirDigest(t, n.Dir)
	err := n.Start()
	if err == nil {
		if started != nil {
			started()
		}
		n.Stop()
		t.Fatalf("node %s started, want it to refuse", n.Name)
	}
	var se *StartError
	if !errors.As(err, &se) || se.Timeout {
		t.Fatalf("start of node %s: %v, want it to exit", n.Name, err)
	}
	out := strings.TrimSpace(se.Stderr)
	t.Logf("node %s refuses to start: exit %d: %s", n.Name, se.Code, out)
	if se.Code == 0 {
		t.Errorf("node %s exited with code 0", n.Name)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != 1 {
		t.Errorf("node %s: %d lines on stderr, want one", n.Name, len(lines))
	}
	after := DirDigest(t, n.Dir)
	for path, sum := range before {
		if got, ok := after[path]; !ok || got != sum {
			t.Errorf("node %s changed %s while it refused to start", n.Name, path)
		}
	}
	for path := range after {
		if _, ok := before[path]; !ok {
			t.Errorf("node %s created %s while it refused to start", n.Name, path)
		}
	}
	return lines[len(lines)-1]
}
