package cluster

import (
	"sync"

	"github.com/hashicorp/raft-wal/types"
)

// logFS is the file system of the raft log, which remembers, for each
// file, the bytes written since its last successful fsync: the append that
// failed. raft-wal cannot take such an append back itself (tail truncation
// in v0.4.0 seals the segment without its index, and the log no longer
// opens: raft-wal issue #31), so faultLog zeroes those bytes before it
// opens the log again, and raft-wal's recovery ends the segment at its
// last complete commit, which is where raft was told the log ends.
type logFS struct {
	types.VFS
	mu    sync.Mutex
	dirty map[*logFile]struct{}
}

func newLogFS(vfs types.VFS) *logFS {
	return &logFS{VFS: vfs, dirty: map[*logFile]struct{}{}}
}

// Create implements types.VFS.
func (v *logFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := v.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	return &logFile{WritableFile: f, fs: v}, nil
}

// OpenWriter implements types.VFS.
func (v *logFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := v.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	return &logFile{WritableFile: f, fs: v}, nil
}

// discardUnsynced zeroes, in every file, what was written since its last
// successful fsync, and syncs the zeroes. The files must still be open: a
// file closed with unsynced bytes fails here, and the log is not reopened
// over them.
func (v *logFS) discardUnsynced() error {
	v.mu.Lock()
	files := make([]*logFile, 0, len(v.dirty))
	for f := range v.dirty {
		files = append(files, f)
	}
	v.mu.Unlock()
	for _, f := range files {
		if err := f.discard(); err != nil {
			return err
		}
	}
	return nil
}

// logFile is a file of a logFS.
type logFile struct {
	types.WritableFile
	fs *logFS
	// lo and hi bound the bytes written since the last successful fsync;
	// hi is 0 if there are none. Written by raft-wal's one writer, read by
	// discardUnsynced only while the log takes no writes (faulted).
	lo, hi int64
}

// WriteAt implements types.WritableFile.
func (f *logFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	if f.hi == 0 {
		f.lo, f.hi = off, off+int64(len(p))
		f.fs.dirty[f] = struct{}{}
	} else {
		f.lo, f.hi = min(f.lo, off), max(f.hi, off+int64(len(p)))
	}
	f.fs.mu.Unlock()
	return f.WritableFile.WriteAt(p, off)
}

// Sync implements types.WritableFile.
func (f *logFile) Sync() error {
	if err := f.WritableFile.Sync(); err != nil {
		return err
	}
	f.synced()
	return nil
}

func (f *logFile) synced() {
	f.fs.mu.Lock()
	f.hi = 0
	delete(f.fs.dirty, f)
	f.fs.mu.Unlock()
}

// discard zeroes the unsynced bytes of f and syncs them.
func (f *logFile) discard() error {
	f.fs.mu.Lock()
	lo, hi := f.lo, f.hi
	f.fs.mu.Unlock()
	if hi == 0 {
		return nil
	}
	if _, err := f.WritableFile.WriteAt(make([]byte, hi-lo), lo); err != nil {
		return err
	}
	if err := f.WritableFile.Sync(); err != nil {
		return err
	}
	f.synced()
	return nil
}
