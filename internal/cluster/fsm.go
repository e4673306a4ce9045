package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/keep-kms/keep/internal/failpoint"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// fsm adapts state.State to raft.FSM. Apply returns the write's error (or
// nil) as the future's response, so that the proposer can hand it back to
// the client.
//
// An entry or snapshot that is not authentic stops the fsm for good: it
// applies nothing more, takes no snapshot, and the node serves nothing
// (Node.gone), because raft would go on with the next entry and the state
// would silently lack one write.
type fsm struct {
	state   *state.State
	notify  chan struct{} // signalled after each applied command; may be nil
	applied atomic.Uint64 // index of the last applied command

	logger *slog.Logger // tells of a refusal; nil for the probes of stopped stores

	// The node's keyring and the stable store of the running instance,
	// where sealsChanged keeps the cluster's seals.
	keyring *hsm.Keyring
	stable  atomic.Pointer[raft.StableStore]

	// From the stores of the running instance (see useStores).
	logName    string
	legacyLast atomic.Uint64 // entries up to it may be unauthenticated
	upgrading  atomic.Bool   // snapshots may be unauthenticated (format 1)
	// finishing allows the snapshot that completes an upgrade. Until then
	// raft takes none, so that an authenticated snapshot in a data
	// directory without the mark always covers every legacy entry (see
	// stores.readFormat).
	finishing atomic.Bool
	failed    atomic.Pointer[error]
}

// errUpgrading postpones raft's snapshots until the upgrade of a data
// directory can complete.
var errUpgrading = errors.New("the data directory is being upgraded: no snapshot before the upgrade completes")

// newFSM returns an fsm that applies to s what st holds.
func newFSM(s *state.State, st *stores) *fsm {
	f := &fsm{state: s}
	f.useStores(st)
	return f
}

// useStores makes f accept what the stores of a new raft instance hold,
// and forgets an earlier failure: the state is applied again from them.
func (f *fsm) useStores(st *stores) {
	f.stable.Store(&st.stable)
	f.logName = st.logName
	f.legacyLast.Store(st.legacyLast)
	f.upgrading.Store(st.upgrading)
	f.failed.Store(nil)
}

// sealsChanged keeps a copy of the cluster's seals in kms.db, where the
// node unseals the root key at its next start (OpenKeyring), and the root
// key in the keyring. It runs as the state applies the change.
func (f *fsm) sealsChanged(sealed, root []byte) {
	if f.keyring != nil {
		f.keyring.Adopt(sealed, root)
	}
	if p := f.stable.Load(); p != nil {
		if err := (*p).Set(sealedRootKeyName, sealed); err != nil && f.logger != nil {
			// The previous copy still unseals: the root key is the same,
			// only the list of HSMs that seal it changed.
			f.logger.Error("failed to store the cluster's seals of the root key", "err", err)
		}
	}
}

// failure returns why f stopped, or nil.
func (f *fsm) failure() error {
	if p := f.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// refuse stops f with err if err says that a record is not authentic.
func (f *fsm) refuse(err error, format string, args ...any) error {
	if !errors.Is(err, state.ErrNotAuthentic) {
		return err
	}
	err = fmt.Errorf("%w: %s: %w", ErrTampered, fmt.Sprintf(format, args...), err)
	if f.failed.CompareAndSwap(nil, &err) && f.logger != nil {
		f.logger.Error("this node applies nothing more and serves nothing", "err", err)
	}
	return err
}

func (f *fsm) Apply(l *raft.Log) any {
	failpoint.Hit(failpoint.BeforeApply)
	if l.Type != raft.LogCommand {
		return nil
	}
	if err := f.failure(); err != nil {
		return err
	}
	var err error
	if l.Index <= f.legacyLast.Load() {
		err = f.state.ApplyLegacy(l.Data)
	} else {
		err = f.state.Apply(l.Data)
	}
	err = f.refuse(err, "entry %d of %s", l.Index, f.logName)
	// Recorded here, not read from raft.AppliedIndex, which raft updates
	// only after Apply returns: a report sent on this signal must already
	// cover this entry.
	f.applied.Store(l.Index)
	if f.notify != nil {
		signal(f.notify)
	}
	return err
}

// Snapshot captures the state and leaves its encoding to Persist, as
// raft's FSM contract asks: raft calls Snapshot on the goroutine that
// applies entries, and calls Persist on another, while entries are applied.
// The capture is cheap (see state.Capture) and what Persist writes is the
// state at the capture.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.failure(); err != nil {
		return nil, err
	}
	if f.upgrading.Load() && !f.finishing.Load() {
		return nil, errUpgrading
	}
	c, err := f.state.Capture()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{capture: c}, nil
}

// Restore restores a snapshot that the leader sent (or that raft read
// from disk); one that is not authentic is refused and stops f.
func (f *fsm) Restore(rc io.ReadCloser) error {
	return f.refuse(f.restore(rc), "raft snapshot")
}

func (f *fsm) restore(rc io.ReadCloser) error {
	failpoint.Hit(failpoint.SnapshotRestore)
	defer rc.Close()
	if f.upgrading.Load() {
		return f.state.RestoreLegacy(rc)
	}
	return f.state.Restore(rc)
}

// restoreNewest restores the newest snapshot of st, the one raft restores
// when it starts, before raft starts: raft is then told not to restore it
// again (raft.Config.NoSnapshotRestoreOnStart), and takes only its index,
// term and configuration. Raft would skip a snapshot that fails its
// checksum or Keep's MAC, or does not decode, and fall back to an older
// state; a node refuses to start instead, naming the file. Doing it here
// rather than in a check before raft's restore reads, verifies and decodes
// the snapshot once: the check decoded it a second time, a third of the
// start of a node of a million keys.
func (f *fsm) restoreNewest(st *stores) error {
	list, err := st.snaps.List()
	if err != nil {
		return fmt.Errorf("failed to list snapshots in %s: %w", st.snapDir, err)
	}
	if len(list) == 0 {
		return nil
	}
	path := filepath.Join(st.snapDir, list[0].ID, "state.bin")
	_, rc, err := st.snaps.Open(list[0].ID)
	if err == nil {
		err = f.restore(sizedSnapshot{rc, list[0].Size})
	}
	if err != nil {
		return fmt.Errorf("%w: snapshot %s: %w", ErrTampered, path, err)
	}
	return nil
}

// sizedSnapshot is a snapshot opened from the store, with the size its
// metadata gives, so that the state reads it into a buffer of that size
// (state.Sized).
type sizedSnapshot struct {
	io.ReadCloser
	size int64
}

// Size returns the snapshot's size.
func (s sizedSnapshot) Size() int64 { return s.size }

type fsmSnapshot struct{ capture *state.Capture }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	failpoint.Hit(failpoint.SnapshotPersist)
	if err := s.capture.Encode(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
