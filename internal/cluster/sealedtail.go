package cluster

import (
	"fmt"

	"github.com/hashicorp/raft-wal/types"
)

// sealedTailFiler opens the segments of the raft log that raft-wal v0.4.0
// marks sealed without writing their index block: when raft truncates the
// log's tail (a follower drops the entries a new leader replaced), raft-wal
// seals the tail segment in its metadata only (hashicorp/raft-wal#31, fixed
// upstream by #33, which no release carries). raft-wal then cannot read that
// segment again, and a node that restarts after such a truncation fails on
// "sealed segment has no index block". Such a segment is read the way
// raft-wal recovers its tail segment at start: by scanning its frames.
// Nothing is written to it.
type sealedTailFiler struct{ types.SegmentFiler }

// Open opens a sealed segment, also one sealed without an index block.
func (f sealedTailFiler) Open(info types.SegmentInfo) (types.SegmentReader, error) {
	if info.SealTime.IsZero() || info.IndexStart != 0 {
		return f.SegmentFiler.Open(info)
	}
	r, err := f.SegmentFiler.RecoverTail(info)
	if err != nil {
		return nil, err
	}
	// Frames past MaxIndex are the truncated entries: the log reads them
	// from the next segment, never from this one.
	if r.LastIndex() < info.MaxIndex {
		r.Close()
		return nil, fmt.Errorf("%w: segment %d of the raft log ends at entry %d, its metadata at %d", types.ErrCorrupt, info.ID, r.LastIndex(), info.MaxIndex)
	}
	return r, nil
}
