package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/migrate"
	"go.etcd.io/bbolt"

	"github.com/keep-kms/keep/internal/failpoint"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// DBFile is the name of raft's stable store in the data directory: the
// current term, the vote and a copy of the sealed root key. A data directory
// without it is a fresh node; see openStores.
const DBFile = "kms.db"

// walDir is where raft-wal keeps the raft log, inside the data directory.
// A write costs one append and one fsync there, where bolt spends two
// fsyncs and a copy-on-write B-tree commit.
const walDir = "wal"

// walSegmentSize is the size of a log segment file, allocated up front.
// Keep's entries are small: a segment holds tens of thousands of them, more
// than the log keeps between snapshots.
const walSegmentSize = 16 << 20

// snapshotDir is where raft keeps snapshots, inside the data directory.
const snapshotDir = "snapshots"

// logCacheSize is how many recent raft entries are kept in memory.
const logCacheSize = 1024

// sealedRootKeyName is the stable-store key of a copy of the HSM-sealed root
// key. It lets a node check its HSM key before raft touches anything.
var sealedRootKeyName = []byte("keep/sealed-root-key")

// formatKey is the stable-store key that marks a data directory whose log
// entries and snapshots are all authenticated (formatAuthenticated). A
// directory without it was written by an earlier version of Keep and is
// upgraded on its first start (see stores.upgrading).
var formatKey = []byte("keep/format")

// formatAuthenticated is the value of formatKey.
const formatAuthenticated = "2"

// stores are raft's log, stable and snapshot stores.
type stores struct {
	logs    raft.LogStore
	stable  raft.StableStore
	snaps   raft.SnapshotStore
	closers []io.Closer
	// faults is the raft log of a data directory, which tells of a full
	// or failing disk; nil in dev mode.
	faults *faultLog

	// logName and snapDir name the log and the snapshots in errors.
	logName, snapDir string
	// upgrading is set for a data directory written by an earlier version
	// of Keep: its snapshots may be unauthenticated (format 1), and so may
	// its log entries up to legacyLast, the last index in the log when it
	// was opened. Entries after it come from this version, or from an
	// attacker: they must be authenticated.
	upgrading  bool
	legacyLast uint64
}

func (s *stores) close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// openStores opens the stores of a data directory (or memory stores in dev
// mode): kms.db, the log in wal/ and the snapshots. It first checks that the
// HSM unseals the root key stored in kms.db, with the file opened read-only,
// so that a start with the wrong HSM key changes nothing on disk.
//
// Without kms.db the node starts fresh, as the documented reset ("delete
// kms.db and start again") expects: a log or snapshots left beside it are
// removed, because raft must not resume a log without the term and vote
// kept in kms.db.
func openStores(ctx context.Context, dir string, k *hsm.Keyring) (*stores, error) {
	if dir == "" {
		mem := raft.NewInmemStore()
		return &stores{logs: mem, stable: mem, snaps: raft.NewInmemSnapshotStore(), logName: "the raft log in memory", snapDir: "memory"}, nil
	}
	path := filepath.Join(dir, DBFile)
	_, err := os.Stat(path)
	fresh := errors.Is(err, os.ErrNotExist)
	switch {
	case err == nil:
		if _, err := openKeyring(ctx, path, k); err != nil {
			return nil, err
		}
	case fresh:
		if err := wipeStores(dir); err != nil {
			return nil, err
		}
	}
	db, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return nil, openError(path, err)
	}
	// Holding kms.db, this node owns the directory: what a restore that
	// a crash cut short left behind is removed.
	if err := removeRestoreLeftovers(dir); err != nil {
		db.Close()
		return nil, err
	}
	log, err := openWAL(ctx, dir, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	st := &stores{
		stable:  db,
		faults:  log,
		closers: []io.Closer{log, db},
		logName: "the raft log in " + filepath.Join(dir, walDir),
		snapDir: filepath.Join(dir, snapshotDir),
	}
	if st.snaps, err = raft.NewFileSnapshotStoreWithLogger(dir, 2, raftLogger()); err != nil {
		st.close()
		return nil, fmt.Errorf("failed to open snapshot store in %s: %w", dir, err)
	}
	if err := st.readFormat(log, fresh); err != nil {
		st.close()
		return nil, err
	}
	st.logs = log
	return st, nil
}

// readFormat marks a fresh data directory as authenticated, or finds out
// whether an existing one is being upgraded.
func (st *stores) readFormat(log raft.LogStore, fresh bool) error {
	if fresh {
		if err := st.stable.Set(formatKey, []byte(formatAuthenticated)); err != nil {
			return fmt.Errorf("failed to mark the data directory: %w", err)
		}
		return nil
	}
	format, err := st.stable.Get(formatKey)
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return fmt.Errorf("failed to read the format of the data directory: %w", err)
	}
	if string(format) == formatAuthenticated {
		return nil
	}
	if st.authenticatedSnapshot() {
		// Upgraded before, and the mark deleted since: deleting it must
		// not open the window for unauthenticated entries again. (While a
		// directory is upgraded, the only authenticated snapshot is the
		// one that completes the upgrade: see fsm.finishing.)
		return st.markUpgraded()
	}
	st.upgrading = true
	if st.legacyLast, err = log.LastIndex(); err != nil {
		return fmt.Errorf("failed to read %s: %w", st.logName, err)
	}
	return nil
}

// authenticatedSnapshot reports whether the newest snapshot is of the
// authenticated format, which only an upgraded directory holds.
func (st *stores) authenticatedSnapshot() bool {
	list, err := st.snaps.List()
	if err != nil || len(list) == 0 {
		return false
	}
	_, rc, err := st.snaps.Open(list[0].ID)
	if err != nil {
		return false
	}
	defer rc.Close()
	return state.AuthenticatedSnapshot(rc)
}

// markUpgraded records that every snapshot and log entry of the data
// directory is authenticated from now on.
func (st *stores) markUpgraded() error {
	if err := st.stable.Set(formatKey, []byte(formatAuthenticated)); err != nil {
		return fmt.Errorf("failed to mark the data directory as upgraded: %w", err)
	}
	st.upgrading, st.legacyLast = false, 0
	return nil
}

// checkSnapshots refuses a data directory whose snapshots raft would not
// read as they are: one whose metadata does not decode (raft would skip it
// silently and fall back to an older state). The newest snapshot, the one
// a start restores, is checked as it is restored (fsm.restoreNewest).
func (st *stores) checkSnapshots() error {
	if _, ok := st.snaps.(*raft.FileSnapshotStore); !ok {
		return nil
	}
	list, err := st.snaps.List()
	if err != nil {
		return fmt.Errorf("failed to list snapshots in %s: %w", st.snapDir, err)
	}
	dirs, err := os.ReadDir(st.snapDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to list snapshots in %s: %w", st.snapDir, err)
	}
	for _, d := range dirs {
		if !d.IsDir() || filepath.Ext(d.Name()) == ".tmp" {
			continue
		}
		if !slices.ContainsFunc(list, func(m *raft.SnapshotMeta) bool { return m.ID == d.Name() }) && !reaped(d.Name(), list) {
			return fmt.Errorf("%w: snapshot %s: its metadata cannot be read", ErrTampered, filepath.Join(st.snapDir, d.Name(), "meta.json"))
		}
	}
	return nil
}

// openWAL opens the raft log of the data directory dir. A log that an
// earlier version of Keep kept in kms.db is moved into it first.
func openWAL(ctx context.Context, dir string, db *raftboltdb.BoltStore) (*faultLog, error) {
	logDir := filepath.Join(dir, walDir)
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create raft log directory: %w", err)
	}
	log, err := openFaultLog(logDir, fs.New())
	if err != nil {
		return nil, err
	}
	if err := moveLogs(ctx, log, db); err != nil {
		log.Close()
		return nil, fmt.Errorf("failed to move the raft log from %s to %s: %w", DBFile, logDir, err)
	}
	return log, nil
}

// moveLogs moves the entries of src into dst. A move interrupted after the
// copy only deletes on the next start; one interrupted during the copy
// (dst holds a prefix of src) copies again from the start.
func moveLogs(ctx context.Context, dst, src raft.LogStore) error {
	first, last, err := logBounds(src)
	if err != nil || last == 0 {
		return err
	}
	copied, err := dst.LastIndex()
	if err != nil {
		return err
	}
	if copied != last {
		if err := clearLog(dst); err != nil {
			return err
		}
		if err := migrate.CopyLogs(ctx, dst, src, 1<<20, nil); err != nil {
			return err
		}
	}
	failpoint.Hit(failpoint.LogMove)
	return src.DeleteRange(first, last)
}

// clearLog deletes every entry of s.
func clearLog(s raft.LogStore) error {
	first, last, err := logBounds(s)
	if err != nil || last == 0 {
		return err
	}
	return s.DeleteRange(first, last)
}

// logBounds returns the first and last index of s; last is 0 if s is empty.
func logBounds(s raft.LogStore) (first, last uint64, err error) {
	if first, err = s.FirstIndex(); err != nil {
		return 0, 0, err
	}
	last, err = s.LastIndex()
	return first, last, err
}

// wipeStores deletes the raft state of a data directory.
func wipeStores(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.Remove(filepath.Join(dir, DBFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to delete %s: %w", DBFile, err)
	}
	for _, sub := range []string{walDir, snapshotDir} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return fmt.Errorf("failed to delete %s: %w", sub, err)
		}
	}
	return nil
}

// restoreTempPattern names the file a restore writes its snapshot to, in
// the data directory, before raft installs it (Node.restoreSnapshotFile).
const restoreTempPattern = ".restore-*.tmp"

// removeRestoreLeftovers removes the snapshot files of restores that a
// crash cut short: up to a backup's size each.
func removeRestoreLeftovers(dir string) error {
	left, err := filepath.Glob(filepath.Join(dir, restoreTempPattern))
	if err != nil {
		return fmt.Errorf("failed to look for restore leftovers in %s: %w", dir, err)
	}
	for _, f := range left {
		if err := os.Remove(f); err != nil {
			return fmt.Errorf("failed to remove a restore's leftover: %w", err)
		}
	}
	return nil
}

func openError(path string, err error) error {
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("failed to open %s: it is in use by another keep server", path)
	}
	return fmt.Errorf("failed to open %s: %w", path, err)
}

// OpenKeyring unseals the root key that the data directory dir holds (a
// copy of the cluster's seals in kms.db) with the node's HSMs, and returns
// the HSM that did: the first of the node's HSMs, in the order of its
// configuration, that has a seal. A fresh data directory has none yet: the
// node's first HSM is returned. A node none of whose HSMs has a seal fails
// with ErrWrongHSM, before raft or anything else is touched.
func OpenKeyring(ctx context.Context, dir string, k *hsm.Keyring) (hsm.HSM, error) {
	first := k.HSMs()[0]
	if dir == "" {
		return first, nil
	}
	path := filepath.Join(dir, DBFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return first, nil
	}
	h, err := openKeyring(ctx, path, k)
	if h == nil && err == nil {
		return first, nil
	}
	return h, err
}

// openKeyring is OpenKeyring on the kms.db at path; it returns no HSM and
// no error if kms.db holds no root key.
func openKeyring(ctx context.Context, path string, k *hsm.Keyring) (hsm.HSM, error) {
	db, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: time.Second},
	})
	if err != nil {
		return nil, openError(path, err)
	}
	defer db.Close()
	sealed, err := db.Get(sealedRootKeyName)
	if err != nil || len(sealed) == 0 {
		return nil, nil // bootstrapping was interrupted before the key was stored
	}
	h, err := k.Open(ctx, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWrongHSM, err)
	}
	return h, nil
}

func raftLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Error, Output: os.Stderr, Exclude: diskFaultRecord})
}

// diskFaultRecord leaves out raft's records of a write its log refused
// for a full or failing disk: raft logs one per attempt (every election,
// every append a leader retries), and faultLog logs the fault once a
// minute instead.
func diskFaultRecord(_ hclog.Level, _ string, args ...any) bool {
	for _, a := range args {
		var f *StorageError
		if err, ok := a.(error); ok && errors.As(err, &f) {
			return true
		}
	}
	return false
}
