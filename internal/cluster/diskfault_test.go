package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"
)

// payload is the data of entry i of the fault tests: its number, padded
// to size bytes.
func payload(i uint64, size int) []byte {
	b := fmt.Appendf(nil, "entry %d ", i)
	return append(b, bytes.Repeat([]byte{'.'}, max(0, size-len(b)))...)
}

// checkEntries fails unless s holds exactly the entries 1..last, each with
// its payload: nothing lost, nothing duplicated or left over.
func checkEntries(t *testing.T, s raft.LogStore, last uint64, size int) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first != 1 || got != last {
		t.Fatalf("the log holds entries %d to %d, want 1 to %d", first, got, last)
	}
	for i := uint64(1); i <= last; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if l.Index != i || !bytes.Equal(l.Data, payload(i, size)) {
			t.Fatalf("entry %d is entry %d with %.20q…", i, l.Index, l.Data)
		}
	}
}

// TestFaultLogRecovers fails the raft log's writes the ways a full or
// failing disk does, and checks that the log refuses writes with the
// right error, serves what it holds, takes writes again once the disk
// can be written, without a restart, and holds exactly the entries raft
// was told are stored, also when opened again.
func TestFaultLogRecovers(t *testing.T) {
	tests := []struct {
		name  string
		op    string        // the operation that fails
		errno syscall.Errno // how
		want  error
		size  int // bytes per entry
		// batches of entries stored before the fault is injected; the
		// rotation case stores until the fault shows.
		before uint64
	}{
		// The data reaches the file, the sync fails: raft is told the
		// append failed, so the entries must not be in the log after it
		// is reopened.
		{"fsync fails", opSync, syscall.EIO, ErrDiskFailed, 100, 10},
		{"write fails: disk full", opWrite, syscall.ENOSPC, ErrDiskFull, 100, 10},
		{"write fails: quota", opWrite, syscall.EDQUOT, ErrDiskFull, 100, 10},
		// The next 16 MiB segment cannot be allocated: raft-wal leaves
		// the full one sealed, and every append fails with "segment is
		// sealed" until the log is opened again.
		{"next segment cannot be allocated", opCreate, syscall.ENOSPC, ErrDiskFull, 64 << 10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var failing atomic.Bool
			vfs := failingVFS{VFS: fs.New(), fail: func(op string) error {
				if failing.Load() && op == tt.op {
					return tt.errno
				}
				return nil
			}}
			l, err := openFaultLog(dir, vfs)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { l.Close() }()
			l.setNode("node-1:7373", slog.New(slog.DiscardHandler))

			var acked uint64 // the last entry StoreLogs stored
			store := func(n uint64) error {
				var logs []*raft.Log
				for i := acked + 1; i <= acked+n; i++ {
					logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: payload(i, tt.size)})
				}
				err := l.StoreLogs(logs)
				if err == nil {
					acked += n
				}
				return err
			}
			for range tt.before {
				if err := store(3); err != nil {
					t.Fatal(err)
				}
			}
			failing.Store(true)
			var ferr error
			for range 2 * walSegmentSize / tt.size {
				if ferr = store(3); ferr != nil {
					break
				}
			}
			if !errors.Is(ferr, tt.want) {
				t.Fatalf("a failed write returned %v, want %v", ferr, tt.want)
			}
			var se *StorageError
			if !errors.As(ferr, &se) || se.Host != "node-1:7373" || !strings.Contains(ferr.Error(), "node node-1:7373") {
				t.Fatalf("the error %q does not name the node", ferr)
			}
			if l.Fault() == nil {
				t.Fatal("the log is not faulted after a failed write")
			}
			// Refused at once while faulted, even once the disk is fine,
			// until the log is reopened; reads are served.
			if err := store(1); !errors.Is(err, tt.want) {
				t.Fatalf("a write to the faulted log returned %v, want %v", err, tt.want)
			}
			checkEntries(t, l, acked, tt.size)

			// Still failing after a few probes.
			time.Sleep(2*probeInterval + 100*time.Millisecond)
			if l.Fault() == nil {
				t.Fatal("the log took writes again while the disk still fails")
			}
			failing.Store(false)
			deadline := time.Now().Add(5 * probeInterval)
			for l.Fault() != nil {
				if time.Now().After(deadline) {
					t.Fatalf("the log did not recover within %v of the disk working again", 5*probeInterval)
				}
				time.Sleep(10 * time.Millisecond)
			}
			checkEntries(t, l, acked, tt.size)
			for range 5 {
				if err := store(3); err != nil {
					t.Fatalf("write after recovery: %v", err)
				}
			}
			checkEntries(t, l, acked, tt.size)

			// And on disk, as a restart finds it.
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if l, err = openFaultLog(dir, fs.New()); err != nil {
				t.Fatal(err)
			}
			checkEntries(t, l, acked, tt.size)
		})
	}
}

// TestStorageError checks the errors of a full and of a failing disk:
// what they are (errors.Is), their text, and that they stay what they
// are when a peer returns them (a write forwarded to a leader whose disk
// is full fails with the same error on the follower).
func TestStorageError(t *testing.T) {
	tests := []struct {
		err      error
		is, isnt error
		text     string
	}{
		{&StorageError{Host: "h:1", Err: fmt.Errorf("write x: %w", syscall.ENOSPC)}, ErrDiskFull, ErrDiskFailed,
			"disk full: the node cannot write its raft log: node h:1 refuses writes until space is freed in its data directory; it serves reads meanwhile and takes writes again by itself"},
		{&StorageError{Host: "h:1", Err: syscall.EDQUOT}, ErrDiskFull, ErrDiskFailed, "disk full: "},
		{&StorageError{Host: "h:2", Err: fmt.Errorf("fsync /secret/path: %w", syscall.EIO)}, ErrDiskFailed, ErrDiskFull,
			"disk error: the node cannot write its raft log (input/output error): node h:2 refuses writes until it can write its data directory again; it serves reads meanwhile and takes writes again by itself"},
		{&StorageError{Host: "h:3", Err: errors.New("segment is sealed")}, ErrDiskFailed, ErrDiskFull, "(I/O error): node h:3"},
	}
	for _, tt := range tests {
		for _, err := range []error{tt.err, fmt.Errorf("apply: %w", tt.err), decodeError(encodeError(tt.err))} {
			if !errors.Is(err, tt.is) || errors.Is(err, tt.isnt) {
				t.Errorf("%v: is %v %v, is %v %v", err, tt.is, errors.Is(err, tt.is), tt.isnt, errors.Is(err, tt.isnt))
			}
			if !strings.Contains(err.Error(), tt.text) || strings.Contains(err.Error(), "/secret/path") {
				t.Errorf("%q does not say %q, or names a path", err, tt.text)
			}
		}
	}
}

// File system operations a failingVFS can fail.
const (
	opCreate = "create" // a new segment (or probe) file, with its preallocation
	opWrite  = "write"
	opSync   = "sync"
)

// failingVFS is a file system that fails the operations fail returns an
// error for: a full or failing disk under the raft log, for every
// operation raft-wal does.
type failingVFS struct {
	types.VFS
	fail func(op string) error
}

// Create implements types.VFS.
func (v failingVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	if err := v.fail(opCreate); err != nil {
		return nil, err
	}
	f, err := v.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	return failingFile{f, v.fail}, nil
}

// OpenWriter implements types.VFS.
func (v failingVFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := v.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	return failingFile{f, v.fail}, nil
}

type failingFile struct {
	types.WritableFile
	fail func(op string) error
}

// WriteAt implements types.WritableFile.
func (f failingFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fail(opWrite); err != nil {
		return 0, err
	}
	return f.WritableFile.WriteAt(p, off)
}

// Sync implements types.WritableFile. A failed sync has written what the
// file was given, as Linux does: the data is in the page cache and may
// or may not be on disk.
func (f failingFile) Sync() error {
	if err := f.fail(opSync); err != nil {
		return err
	}
	return f.WritableFile.Sync()
}
