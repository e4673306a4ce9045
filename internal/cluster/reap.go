package cluster

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// reaped reports whether the snapshot directory name, whose metadata
// cannot be read, sorts before the newest readable snapshot of list (raft
// names them TERM-INDEX-MILLIS and restores the newest). Raft deletes old
// snapshots file by file (ReapSnapshots), so a node killed meanwhile
// leaves one without its meta.json behind; raft never restores it, so it
// hides no newer state, and refusing it would keep a crashed node down.
func reaped(name string, list []*raft.SnapshotMeta) bool {
	if len(list) == 0 {
		return false
	}
	var term, index, ms uint64
	if _, err := fmt.Sscanf(name, "%d-%d-%d", &term, &index, &ms); err != nil || fmt.Sprintf("%d-%d-%d", term, index, ms) != name {
		return false
	}
	newest := list[0]
	switch {
	case term != newest.Term:
		return term < newest.Term
	case index != newest.Index:
		return index < newest.Index
	}
	return name < newest.ID
}
