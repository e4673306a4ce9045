//go:build failpoints

package failpoint

import (
	"syscall"

	gofail "go.etcd.io/gofail/runtime"
)

// Enabled reports whether this build has failpoints.
const Enabled = true

// points holds the gofail failpoint of every name. They are declared at
// init, which applies the terms of GOFAIL_FAILPOINTS, so that a point is
// armed before the server opens its data directory.
var points = func() map[Name]*gofail.Failpoint {
	m := make(map[Name]*gofail.Failpoint, len(All))
	for _, n := range All {
		m[n] = gofail.NewFailpoint(string(n))
	}
	return m
}()

// Hit evaluates the terms of failpoint n: gofail's panic and sleep act
// inside, and a term that returns a value kills the process.
func Hit(n Name) {
	if _, err := points[n].Acquire(); err != nil {
		return // disabled, or a term without a value (off, sleep, print)
	}
	// As kill -9: the process ends here, with no deferred function run.
	_ = syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL cannot be caught; nothing runs after it
}
