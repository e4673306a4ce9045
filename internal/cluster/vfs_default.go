//go:build !keepfault

package cluster

import (
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"
)

// logVFS is the file system of the raft log of the data directory dir.
func logVFS(string) types.VFS { return fs.New() }
