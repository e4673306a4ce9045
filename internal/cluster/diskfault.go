package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// A node whose disk is full, or whose file system fails a write or an
// fsync of the raft log, must refuse writes with an error that says so,
// serve reads, and take writes again by itself once the disk can be
// written: no restart.
//
// raft-wal v0.4.0 cannot go on after a failed append: its segment writer
// keeps the failed entries in its in-memory index (every later append of
// the same index fails as "non-monotonic"; fixed upstream by raft-wal PR
// #32), and a failed rotation (the next 16 MiB segment could not be
// allocated) leaves the tail sealed, so every append fails with "segment
// is sealed" until the process restarts. Nor can it take an append back:
// truncating the tail marks the segment sealed without writing its index,
// and the log no longer opens (raft-wal issue #31, fixed by PR #33). Both
// fixes are unreleased: v0.4.0 is the newest version on the module proxy.
// Reopening the log from disk is what a restart does, and it recovers from
// both failures: the writer is rebuilt from the last complete commit of
// the tail, and a segment that metadata lists but whose file is missing is
// created then.
//
// faultLog is therefore the raft log with one more state: faulted. The
// first failed write (StoreLogs, or DeleteRange) puts it there, and from
// then on writes fail at once with a *StorageError (ErrDiskFull or
// ErrDiskFailed) without touching the broken writer; reads go on. Every
// probeInterval, it writes and syncs a probe file in the log's directory;
// once that works, it zeroes what the failed append wrote (an append whose
// fsync failed may have reached the file, but raft answered it as failed;
// see logFS), closes the log, opens it again, checks that it ends where
// raft was told it ends, and takes writes again.

// probeInterval is how often a faulted log checks whether it can write.
const probeInterval = time.Second

// faultLogInterval is the shortest time between two log records of one
// fault: a full disk must not fill the server log too.
const faultLogInterval = time.Minute

// probeSize is how many bytes the probe writes and syncs. The probe file
// is allocated the size of a log segment first, which is what the next
// segment takes, so that a disk with room for the probe has room for it.
const probeSize = 4 << 10

// probeFile is the name of the probe, in the log's directory.
const probeFile = "write-probe"

// StorageError is a write this node's disk refused. It is ErrDiskFull or
// ErrDiskFailed (errors.Is) and names the node, so that a client whose
// write was forwarded learns which node to look at.
type StorageError struct {
	Host string // the node, as its peers know it
	Err  error  // what the file system said

	since time.Time // when the log became unwritable
}

func (e *StorageError) full() bool {
	return errors.Is(e.Err, syscall.ENOSPC) || errors.Is(e.Err, syscall.EDQUOT)
}

// Error tells the client what is wrong, where, and what happens next. The
// file system's own text is left out (it names paths on the node), except
// its errno for a disk error.
func (e *StorageError) Error() string {
	if e.full() {
		return fmt.Sprintf("%v: node %s refuses writes until space is freed in its data directory; it serves reads meanwhile and takes writes again by itself", ErrDiskFull, e.Host)
	}
	what := "I/O error"
	var errno syscall.Errno
	if errors.As(e.Err, &errno) {
		what = errno.Error()
	}
	return fmt.Sprintf("%v (%s): node %s refuses writes until it can write its data directory again; it serves reads meanwhile and takes writes again by itself", ErrDiskFailed, what, e.Host)
}

// Is makes a StorageError ErrDiskFull or ErrDiskFailed.
func (e *StorageError) Is(target error) bool {
	return target == ErrDiskFull && e.full() || target == ErrDiskFailed && !e.full()
}

// Unwrap returns the file system's error.
func (e *StorageError) Unwrap() error { return e.Err }

// segmentLog is an open raft-wal log: what faultLog closes and opens again.
type segmentLog struct {
	wal  *wal.WAL
	meta *metadb.BoltMetaDB
	// store is the log as raft reads it: a cache of recent entries (it
	// serves the entries the leader replicates right after writing them,
	// instead of reading them back from disk) over rawErrLog, which keeps
	// the file system's error that the cache passes on only as text.
	store raft.LogStore
}

// close closes the log, then its meta store: WAL.Close leaves the meta
// store open, and its file lock would block the next open of the
// directory in this process (a reopen, a node reset or edit).
func (s *segmentLog) close() error {
	return errors.Join(s.wal.Close(), s.meta.Close())
}

// faultLog is the raft log of a data directory, which reports a failed
// write as a *StorageError and recovers from it in-process (see above).
type faultLog struct {
	dir string
	fs  *logFS

	// mu is read-held by every call into the log, and write-held while
	// the log is closed and opened again.
	mu  sync.RWMutex
	seg *segmentLog // nil while reopening failed

	fault atomic.Pointer[StorageError] // nil while the log takes writes

	fmu       sync.Mutex
	rawErr    error  // the file system's error of the last failed write
	rotateErr error  // why raft-wal could not create the next segment
	good      uint64 // last index raft was told is stored, when the fault began
	host      string // names the node in errors
	logger    *slog.Logger
	logged    time.Time // when the fault was last logged
	failures  int       // writes failed or refused since then
	done      chan struct{}
	closed    bool
}

// openFaultLog opens the raft log in dir on vfs.
func openFaultLog(dir string, vfs types.VFS) (*faultLog, error) {
	l := &faultLog{dir: dir, fs: newLogFS(vfs), logger: slog.Default(), done: make(chan struct{})}
	vfs.Delete(dir, probeFile) // a segment's size, if a crash left it
	seg, err := l.open()
	if err != nil {
		return nil, err
	}
	l.seg = seg
	return l, nil
}

func (l *faultLog) open() (*segmentLog, error) {
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(l.dir, wal.WithMetaStore(meta), wal.WithSegmentSize(walSegmentSize),
		wal.WithSegmentFiler(sealedTailFiler{segment.NewFiler(l.dir, l.fs)}), wal.WithLogger(l.walLogger()))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("failed to open raft log in %s: %w", l.dir, err)
	}
	cache, err := raft.NewLogCache(logCacheSize, rawErrLog{compactedLog{w}, l})
	if err != nil {
		w.Close()
		meta.Close()
		return nil, err
	}
	return &segmentLog{wal: w, meta: meta, store: cache}, nil
}

// setNode names the node in errors and tells where to log.
func (l *faultLog) setNode(host string, logger *slog.Logger) {
	l.fmu.Lock()
	l.host, l.logger = host, logger
	l.fmu.Unlock()
}

// Fault returns the error writes get while the log is faulted, nil while
// it takes writes.
func (l *faultLog) Fault() error {
	if f := l.fault.Load(); f != nil {
		return f
	}
	return nil
}

// errReopening is what a read gets while the log could not be opened
// again yet.
var errReopening = errors.New("the raft log is being reopened after a failed write")

// read runs f on the open log.
func (l *faultLog) read(f func(raft.LogStore) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.seg == nil {
		return errReopening
	}
	return f(l.seg.store)
}

// FirstIndex implements raft.LogStore.
func (l *faultLog) FirstIndex() (i uint64, err error) {
	err = l.read(func(s raft.LogStore) (err error) { i, err = s.FirstIndex(); return })
	return i, err
}

// LastIndex implements raft.LogStore.
func (l *faultLog) LastIndex() (i uint64, err error) {
	err = l.read(func(s raft.LogStore) (err error) { i, err = s.LastIndex(); return })
	return i, err
}

// GetLog implements raft.LogStore.
func (l *faultLog) GetLog(index uint64, log *raft.Log) error {
	return l.read(func(s raft.LogStore) error { return s.GetLog(index, log) })
}

// StoreLog implements raft.LogStore.
func (l *faultLog) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore. Raft appends after the last entry it
// was told is stored, so logs[0].Index-1 is that entry.
func (l *faultLog) StoreLogs(logs []*raft.Log) error {
	if f := l.fault.Load(); f != nil {
		l.refused()
		return f
	}
	if len(logs) == 0 {
		return nil
	}
	err := l.read(func(s raft.LogStore) error { return s.StoreLogs(logs) })
	if err != nil {
		return l.failed(err, logs[0].Index-1)
	}
	return nil
}

// DeleteRange implements raft.LogStore. A failed deletion (a compaction,
// or a suffix raft truncates) leaves raft's idea of the last entry as it
// was.
func (l *faultLog) DeleteRange(lo, hi uint64) error {
	if f := l.fault.Load(); f != nil {
		l.refused()
		return f
	}
	var last uint64
	err := l.read(func(s raft.LogStore) (err error) {
		if last, err = s.LastIndex(); err != nil {
			return err
		}
		return s.DeleteRange(lo, hi)
	})
	if err != nil {
		return l.failed(err, last)
	}
	return nil
}

// IsMonotonic implements raft.MonotonicLogStore: raft-wal takes entries
// only in order, so raft must empty it, not compact it, when it installs a
// snapshot past its end. Without it, the first append after the snapshot
// failed as "non-monotonic", and the follower stayed behind for good.
func (l *faultLog) IsMonotonic() bool { return true }

// Close implements io.Closer: it stops the recovery and closes the log.
func (l *faultLog) Close() error {
	l.fmu.Lock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	l.fmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seg == nil {
		return nil
	}
	err := l.seg.close()
	l.seg = nil
	return err
}

// failed puts the log in the faulted state after the write that failed
// with err, when raft held good as the last stored entry, and starts the
// recovery.
func (l *faultLog) failed(err error, good uint64) error {
	l.fmu.Lock()
	if l.rawErr != nil {
		err, l.rawErr = l.rawErr, nil
	}
	if errors.Is(err, wal.ErrSealed) && l.rotateErr != nil {
		err = fmt.Errorf("%w: the next segment could not be created: %w", err, l.rotateErr)
	}
	l.rotateErr = nil
	l.fmu.Unlock()
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		// Not the file system's error but raft-wal's ("segment is
		// sealed": the next segment could not be created). The probe
		// tells whether the disk is full.
		if perr := probe(l.fs.VFS, l.dir); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	l.fmu.Lock()
	f := &StorageError{Host: l.host, Err: err, since: time.Now()}
	start := l.fault.CompareAndSwap(nil, f)
	if start {
		l.good = good
	}
	l.failures++
	l.fmu.Unlock()
	if !start {
		return l.fault.Load()
	}
	l.report(f, err)
	go l.recover()
	return f
}

// walLogger is raft-wal's logger. raft-wal creates the next segment in
// the background and only logs when that fails ("rotate error"); the
// appends after it fail with ErrSealed. The logger hands the error to the
// fault instead, which says "disk full" where raft-wal says "sealed".
func (l *faultLog) walLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Error, Output: os.Stderr,
		Exclude: func(_ hclog.Level, msg string, args ...any) bool {
			if msg != "rotate error" {
				return false
			}
			for _, a := range args {
				if err, ok := a.(error); ok {
					l.fmu.Lock()
					l.rotateErr = err
					l.fmu.Unlock()
					return true
				}
			}
			return false
		}})
}

// keepRawErr records the file system's error of a failed write.
func (l *faultLog) keepRawErr(err error) {
	l.fmu.Lock()
	l.rawErr = err
	l.fmu.Unlock()
}

// refused counts a write refused while the log is faulted.
func (l *faultLog) refused() {
	l.fmu.Lock()
	l.failures++
	l.fmu.Unlock()
}

// report logs the fault, at most once per faultLogInterval; cause is the
// full error, paths included, for the operator.
func (l *faultLog) report(f *StorageError, cause error) {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if time.Since(l.logged) < faultLogInterval {
		return
	}
	l.logger.Error("the raft log cannot be written: this node refuses writes, serves reads, and takes writes again once it can write (logged at most once a minute)",
		"fault", faultKind(f), "dir", l.dir, "err", cause, "refused_writes", l.failures)
	l.logged, l.failures = time.Now(), 0
}

func faultKind(f *StorageError) string {
	if f.full() {
		return "disk full"
	}
	return "disk error"
}

// recover probes the disk every probeInterval and, once it can be
// written, reopens the log and lets writes through again.
func (l *faultLog) recover() {
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-tick.C:
		}
		err := probe(l.fs.VFS, l.dir)
		if err == nil {
			err = l.reopen()
		}
		if err != nil {
			f := l.fault.Load()
			var errno syscall.Errno
			if errors.As(err, &errno) {
				// The disk may have gone from full to failing, or back.
				f = &StorageError{Host: f.Host, Err: err, since: f.since}
				l.fault.Store(f)
			}
			l.report(f, err)
			continue
		}
		// l.logged stays: a disk that fails again within the minute is
		// not logged again before the minute is up.
		l.fmu.Lock()
		kind := faultKind(l.fault.Load())
		l.fault.Store(nil)
		l.logger.Info("the raft log can be written again: this node takes writes again", "fault", kind, "dir", l.dir, "refused_writes", l.failures)
		l.failures = 0
		l.fmu.Unlock()
		return
	}
}

// probe writes and syncs probeSize bytes in dir, and deletes them.
func probe(vfs types.VFS, dir string) error {
	vfs.Delete(dir, probeFile) // left by a probe that failed
	f, err := vfs.Create(dir, probeFile, walSegmentSize)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(make([]byte, probeSize), 0)
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close(), vfs.Delete(dir, probeFile))
	return err
}

// reopen closes the log and opens it again from disk, without what a
// failed append left in it.
func (l *faultLog) reopen() error {
	l.fmu.Lock()
	good, closed := l.good, l.closed
	l.fmu.Unlock()
	if closed {
		return errors.New("the raft log is closed")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seg != nil {
		// An append whose write or fsync failed may have reached the
		// file: raft answered it as failed, so it must not be in the log
		// raft goes on with.
		if err := l.fs.discardUnsynced(); err != nil {
			return err
		}
		l.seg.close() // the writer is broken; its errors say nothing new
		l.seg = nil
	}
	seg, err := l.open()
	if err != nil {
		return err
	}
	last, err := seg.store.LastIndex()
	if err == nil && last != good {
		// Not seen in tests: raft's idea of the log and the log differ,
		// which only a restart, where raft reads the log, sets right.
		err = fmt.Errorf("the raft log in %s ends at entry %d after reopening, but raft was told it ends at %d: restart the node", l.dir, last, good)
	}
	if err != nil {
		seg.close()
		return err
	}
	l.seg = seg
	return nil
}

// rawErrLog is compactedLog that hands the error of a failed write to its
// faultLog: raft's LogCache above it passes the error on as text only.
type rawErrLog struct {
	compactedLog
	l *faultLog
}

// StoreLogs implements raft.LogStore.
func (r rawErrLog) StoreLogs(logs []*raft.Log) error {
	err := r.compactedLog.StoreLogs(logs)
	if err != nil {
		r.l.keepRawErr(err)
	}
	return err
}

// StoreLog implements raft.LogStore.
func (r rawErrLog) StoreLog(log *raft.Log) error { return r.StoreLogs([]*raft.Log{log}) }

// DeleteRange implements raft.LogStore.
func (r rawErrLog) DeleteRange(lo, hi uint64) error {
	err := r.compactedLog.DeleteRange(lo, hi)
	if err != nil {
		r.l.keepRawErr(err)
	}
	return err
}

var _ io.Closer = (*faultLog)(nil)
