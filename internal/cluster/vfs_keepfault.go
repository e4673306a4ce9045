//go:build keepfault

package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"
)

// FaultFile is, in a binary built with the keepfault tag (for tests
// only), the file of the data directory whose presence makes every fsync
// of the raft log fail with EIO: the end-to-end test of a failing disk.
const FaultFile = "keepfault-fsync"

// logVFS is the file system of the raft log of the data directory dir; in
// a keepfault build, its fsyncs fail while dir holds FaultFile.
func logVFS(dir string) types.VFS {
	trigger := filepath.Join(dir, FaultFile)
	return failingVFS{VFS: fs.New(), fail: func(op string) error {
		if op != opSync {
			return nil
		}
		if _, err := os.Stat(trigger); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return &os.PathError{Op: "fsync", Path: trigger, Err: syscall.EIO}
	}}
}
