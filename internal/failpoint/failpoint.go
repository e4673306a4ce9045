// Package failpoint names the points where the robustness tests
// (test/cluster, TestRobustness) crash or stall a keep server: around the
// raft log append, between commit and apply, in snapshot persist and
// install, and in the move of the raft log out of kms.db.
//
// A release build compiles every failpoint to an empty function that the
// compiler removes: it reads no environment, takes no lock and links no
// failpoint library, so nothing can switch it on. A build with the tag
// failpoints (go build -tags failpoints ./cmd/keep) declares each point
// with go.etcd.io/gofail's runtime: the terms of a point are set at start
// in GOFAIL_FAILPOINTS (name=terms;name=terms) or at run time over
// gofail's HTTP endpoint (GOFAIL_HTTP=IP:PORT, then
// `curl -X PUT -d 'return("kill")' http://IP:PORT/NAME`), in gofail's term
// syntax: panic, sleep(ms), N*term, P%term, term->term. A term that
// returns a value (return("kill"), or any other value) kills the process
// at once with SIGKILL, as a power cut or kill -9 would: no deferred
// function runs and nothing more is written.
package failpoint

// Name is a failpoint's name, as GOFAIL_FAILPOINTS and the HTTP endpoint
// spell it.
type Name string

// The failpoints.
const (
	// BeforeLogAppend is hit before entries are written to the raft log.
	BeforeLogAppend Name = "keepBeforeLogAppend"
	// AfterLogAppend is hit after entries are written and synced to the
	// raft log, before raft acknowledges them.
	AfterLogAppend Name = "keepAfterLogAppend"
	// BeforeApply is hit when raft hands a committed entry to the state
	// machine, before it is applied.
	BeforeApply Name = "keepBeforeApply"
	// SnapshotPersist is hit when a snapshot the node takes starts to be
	// written: its directory exists in the snapshot store, unfinished
	// (.tmp), and its data does not.
	SnapshotPersist Name = "keepSnapshotPersist"
	// SnapshotRestore is hit before the state machine restores a snapshot:
	// the node's own at start, or one installed from the leader (stored,
	// not yet applied).
	SnapshotRestore Name = "keepSnapshotRestore"
	// LogMove is hit when the raft log of kms.db has been copied into the
	// WAL, before it is deleted from kms.db.
	LogMove Name = "keepLogMove"
)

// All lists every failpoint.
var All = []Name{BeforeLogAppend, AfterLogAppend, BeforeApply, SnapshotPersist, SnapshotRestore, LogMove}
