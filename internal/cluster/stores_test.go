package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/keep-kms/keep/internal/hsm"
)

// testHSM returns the keyring of a node with one new soft HSM.
func testHSM(t testing.TB) *hsm.Keyring {
	t.Helper()
	key, err := hsm.GenerateSoftKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hsm.ParseSoftKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return hsm.NewKeyring(h)
}

func testLogs(first, last uint64) []*raft.Log {
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d", i)})
	}
	return logs
}

// logRange returns the first and last index of s and checks that every
// entry between them holds the data testLogs gave it.
func logRange(t *testing.T, s raft.LogStore) (uint64, uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	for i := first; i <= last && last > 0; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if want := fmt.Sprintf("entry %d", i); string(l.Data) != want {
			t.Fatalf("entry %d holds %q, want %q", i, l.Data, want)
		}
	}
	return first, last
}

// oldDataDir returns a data directory as earlier versions left it: the
// raft log (entries 5 to 300) and the term (7) both in kms.db.
func oldDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	db, err := raftboltdb.NewBoltStore(filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.StoreLogs(testLogs(5, 300)); err != nil {
		t.Fatal(err)
	}
	if err := db.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestOpenStoresMovesBoltLog opens a data directory whose raft log is still
// in kms.db, as earlier versions kept it: the log moves into the WAL, and
// kms.db keeps its stable values but no entries.
func TestOpenStoresMovesBoltLog(t *testing.T) {
	dir := oldDataDir(t)

	h := testHSM(t)
	for run := range 2 { // the second start finds the log moved already
		st, err := openStores(context.Background(), dir, h)
		if err != nil {
			t.Fatalf("start %d: %v", run, err)
		}
		if first, last := logRange(t, st.logs); first != 5 || last != 300 {
			t.Errorf("start %d: log holds [%d, %d], want [5, 300]", run, first, last)
		}
		if term, err := st.stable.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
			t.Errorf("start %d: term %d (%v), want 7", run, term, err)
		}
		if err := st.close(); err != nil {
			t.Fatal(err)
		}
	}

	db, err := raftboltdb.NewBoltStore(filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if first, last := logRange(t, db); last != 0 {
		t.Errorf("kms.db still holds entries [%d, %d]", first, last)
	}
}

// TestOpenStoresFinishesInterruptedMove starts on a data directory where
// moving the log out of kms.db stopped halfway through the copy: the WAL
// holds a prefix of the log. The move starts over, and no entry is lost.
func TestOpenStoresFinishesInterruptedMove(t *testing.T) {
	dir := oldDataDir(t)

	if err := os.Mkdir(filepath.Join(dir, walDir), 0o700); err != nil {
		t.Fatal(err)
	}
	meta := &metadb.BoltMetaDB{}
	log, err := wal.Open(filepath.Join(dir, walDir), wal.WithMetaStore(meta))
	if err != nil {
		t.Fatal(err)
	}
	if err := log.StoreLogs(testLogs(5, 100)); err != nil {
		t.Fatal(err)
	}
	log.Close()
	meta.Close()

	st, err := openStores(context.Background(), dir, testHSM(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if first, last := logRange(t, st.logs); first != 5 || last != 300 {
		t.Errorf("log holds [%d, %d], want [5, 300]", first, last)
	}
}

// TestOpenStoresWithoutDBFile checks the documented reset: a data directory
// whose kms.db was deleted starts with an empty log and no snapshots, even
// though the old ones are still there.
func TestOpenStoresWithoutDBFile(t *testing.T) {
	dir := t.TempDir()
	h := testHSM(t)
	st, err := openStores(context.Background(), dir, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.logs.StoreLogs(testLogs(1, 10)); err != nil {
		t.Fatal(err)
	}
	sink, err := st.snaps.Create(raft.SnapshotVersionMax, 10, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink.Write([]byte("old state"))
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	st.close()

	if err := os.Remove(filepath.Join(dir, DBFile)); err != nil {
		t.Fatal(err)
	}
	st, err = openStores(context.Background(), dir, h)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if first, last := logRange(t, st.logs); last != 0 {
		t.Errorf("log holds [%d, %d] after kms.db was deleted, want none", first, last)
	}
	if snaps, err := st.snaps.List(); err != nil || len(snaps) != 0 {
		t.Errorf("%d snapshots (%v) after kms.db was deleted, want none", len(snaps), err)
	}
}

// TestCompactedEntriesAreGone checks that entries before the first index
// are not found after a compaction, also while their segment lives on:
// raft sends a follower that needs them a snapshot instead.
func TestCompactedEntriesAreGone(t *testing.T) {
	st, err := openStores(context.Background(), t.TempDir(), testHSM(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if err := st.logs.StoreLogs(testLogs(1, 100)); err != nil {
		t.Fatal(err)
	}
	if err := st.logs.DeleteRange(1, 60); err != nil {
		t.Fatal(err)
	}
	if first, last := logRange(t, st.logs); first != 61 || last != 100 {
		t.Errorf("log holds [%d, %d], want [61, 100]", first, last)
	}
	for _, i := range []uint64{1, 30, 60} {
		var l raft.Log
		if err := st.logs.GetLog(i, &l); !errors.Is(err, raft.ErrLogNotFound) {
			t.Errorf("compacted entry %d: got %v, want %v", i, err, raft.ErrLogNotFound)
		}
	}
}

// TestOpenStoresRemovesRestoreLeftovers checks that the snapshot file of
// a restore a crash cut short is removed when the stores open again, and
// nothing else is.
func TestOpenStoresRemovesRestoreLeftovers(t *testing.T) {
	dir := t.TempDir()
	h := testHSM(t)
	st, err := openStores(context.Background(), dir, h)
	if err != nil {
		t.Fatal(err)
	}
	st.close()
	left := filepath.Join(dir, ".restore-123.tmp")
	other := filepath.Join(dir, "restore-notes.tmp")
	for _, f := range []string{left, other} {
		if err := os.WriteFile(f, []byte("a backup's snapshot"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err = openStores(context.Background(), dir, h)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after the stores opened: %v", left, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("%s was removed too: %v", other, err)
	}
}
