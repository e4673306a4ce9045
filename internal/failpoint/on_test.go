//go:build failpoints

package failpoint

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	gofail "go.etcd.io/gofail/runtime"
)

// TestHit checks the terms of a build with failpoints: a disabled point and
// one that sleeps return, one that returns a value kills the process (run
// in a child process of this test).
func TestHit(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") != "" {
		Hit(BeforeApply) // armed by GOFAIL_FAILPOINTS
		os.Exit(0)       // not reached
	}
	for _, tc := range []struct {
		name   string
		terms  string
		killed bool
	}{
		{"disabled", "", false},
		{"off", "off", false},
		{"sleep", "sleep(1)", false},
		{"skipped once", "1*off->return(\"kill\")", false},
		{"kill", "return(\"kill\")", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHit$")
			cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", "GOFAIL_FAILPOINTS="+string(BeforeApply)+"="+tc.terms)
			err := cmd.Run()
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			killed := ws.Signaled() && ws.Signal() == syscall.SIGKILL
			if killed != tc.killed {
				t.Errorf("terms %q: killed = %v (%v), want %v", tc.terms, killed, err, tc.killed)
			}
		})
	}
	// In this process, set at run time as the HTTP endpoint does.
	if err := gofail.Enable(string(SnapshotPersist), "sleep(20)"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	Hit(SnapshotPersist)
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("sleep(20) took %v", d)
	}
}
