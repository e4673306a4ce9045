package cluster

import (
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// compactedLog is the raft log in raft-wal, corrected in one point: an entry
// before FirstIndex is not found. raft-wal deletes only whole segments and,
// after a compaction (DeleteRange of the head), still returns the compacted
// entries that sit in the current segment. Raft needs ErrLogNotFound for
// them to send a follower that is far behind a snapshot; without it, the
// follower replays entries the log no longer claims to hold.
type compactedLog struct{ *wal.WAL }

// GetLog implements raft.LogStore.
func (l compactedLog) GetLog(index uint64, log *raft.Log) error {
	first, err := l.WAL.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound
	}
	return l.WAL.GetLog(index, log)
}
