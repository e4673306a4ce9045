package cluster

import (
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"

	"github.com/keep-kms/keep/internal/failpoint"
)

// compactedLog is the raft log in raft-wal, corrected in one point (and
// with the failpoints of the append, see StoreLogs): an entry
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

// StoreLogs implements raft.LogStore: raft-wal appends and syncs the
// entries. The failpoints around it let the robustness tests crash a node
// before its log holds a batch, and after it does but before raft
// acknowledges it.
func (l compactedLog) StoreLogs(logs []*raft.Log) error {
	failpoint.Hit(failpoint.BeforeLogAppend)
	err := l.WAL.StoreLogs(logs)
	failpoint.Hit(failpoint.AfterLogAppend)
	return err
}
