package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// leaderState returns an initialized state, as on a leader, its HSM, and
// the entries that made it; the first is the init entry.
func leaderState(t testing.TB) (*state.State, *hsm.Keyring, [][]byte) {
	t.Helper()
	h := testHSM(t)
	root, err := crypto.GenerateKey(crypto.AES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := h.HSMs()[0].Seal(context.Background(), root.Material())
	if err != nil {
		t.Fatal(err)
	}
	s := state.New(h)
	var entries [][]byte
	for _, e := range []*state.Entry{
		{Op: state.OpInit, Init: &state.InitArgs{ClusterID: "c", SealedRootKey: sealed}},
		{Op: state.OpCreateEnclave, Name: "a"},
		{Op: state.OpCreateEnclave, Name: "b"},
		{Op: state.OpCreateEnclave, Name: "c"},
	} {
		data, err := s.EncodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(data); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, data)
	}
	return s, h, entries
}

func command(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// TestFSMRefusesTamperedEntry gives a follower's fsm the leader's entries,
// one of them changed: it refuses that entry and every later one, takes no
// snapshot, and says which entry of which log.
func TestFSMRefusesTamperedEntry(t *testing.T) {
	_, h, entries := leaderState(t)
	bad := bytes.Replace(entries[2], []byte(`"name":"b"`), []byte(`"name":"x"`), 1)

	f := newFSM(state.New(h), &stores{logName: "the raft log in DIR/wal"})
	for i, data := range [][]byte{entries[0], entries[1], bad, entries[3]} {
		f.Apply(command(uint64(i+1), data))
	}
	err := f.failure()
	if !errors.Is(err, ErrTampered) || !errors.Is(err, state.ErrNotAuthentic) {
		t.Fatalf("failure: %v", err)
	}
	if want := "entry 3 of the raft log in DIR/wal"; !strings.Contains(err.Error(), want) {
		t.Fatalf("failure %q does not name %q", err, want)
	}
	for _, name := range []string{"x", "b", "c"} {
		if _, err := f.state.Enclave(name); !errors.Is(err, state.ErrEnclaveNotFound) {
			t.Errorf("enclave %s was applied: %v", name, err)
		}
	}
	if _, err := f.Snapshot(); !errors.Is(err, ErrTampered) {
		t.Fatalf("snapshot of a stopped fsm: %v", err)
	}
}

// TestFSMLegacyWindow accepts unauthenticated entries up to the last index
// the log held when an upgraded data directory was opened, and refuses
// them after it.
func TestFSMLegacyWindow(t *testing.T) {
	_, h, entries := leaderState(t)
	legacy, _ := json.Marshal(&state.Entry{Op: state.OpCreateEnclave, Name: "legacy", Time: time.Now()})

	f := newFSM(state.New(h), &stores{upgrading: true, legacyLast: 2})
	f.Apply(command(1, entries[0]))
	if resp := f.Apply(command(2, legacy)); resp != nil {
		t.Fatalf("legacy entry within the window: %v", resp)
	}
	if _, err := f.state.Enclave("legacy"); err != nil {
		t.Fatal(err)
	}
	f.Apply(command(3, bytes.Replace(legacy, []byte("legacy"), []byte("later"), 1)))
	if err := f.failure(); !errors.Is(err, state.ErrNotAuthentic) {
		t.Fatalf("legacy entry after the window: %v", err)
	}
}

// TestFSMRefusesTamperedSnapshot restores a snapshot as a follower does
// when the leader sends one: a changed one is refused and stops the fsm.
func TestFSMRefusesTamperedSnapshot(t *testing.T) {
	leader, h, _ := leaderState(t)
	var snap bytes.Buffer
	if err := leader.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(snap.Bytes(), []byte(`"Name":"b"`), []byte(`"Name":"x"`), 1)
	f := newFSM(state.New(h), &stores{})
	if err := f.Restore(io.NopCloser(bytes.NewReader(bad))); !errors.Is(err, ErrTampered) {
		t.Fatalf("tampered snapshot: %v", err)
	}
	if f.state.Initialized() {
		t.Fatal("the tampered snapshot was applied")
	}
	f = newFSM(state.New(h), &stores{})
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap.Bytes()))); err != nil {
		t.Fatalf("genuine snapshot: %v", err)
	}
}

// TestStoresFormat marks a fresh data directory as authenticated, and
// finds one without the mark (an earlier version's) being upgraded, with
// the window of legacy entries ending at its last entry.
func TestStoresFormat(t *testing.T) {
	h := testHSM(t)
	dir := t.TempDir()
	st, err := openStores(context.Background(), dir, h)
	if err != nil {
		t.Fatal(err)
	}
	if st.upgrading {
		t.Fatal("a fresh directory is being upgraded")
	}
	st.close()

	old := oldDataDir(t) // no mark, log 5 to 300
	st, err = openStores(context.Background(), old, h)
	if err != nil {
		t.Fatal(err)
	}
	if !st.upgrading || st.legacyLast != 300 {
		t.Fatalf("old directory: upgrading %v, legacy entries up to %d", st.upgrading, st.legacyLast)
	}
	if err := st.markUpgraded(); err != nil {
		t.Fatal(err)
	}
	st.close()
	st, err = openStores(context.Background(), old, h)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if st.upgrading || st.legacyLast != 0 {
		t.Fatalf("marked directory: upgrading %v, legacy entries up to %d", st.upgrading, st.legacyLast)
	}
}

// TestCheckSnapshotsUnreadableMeta refuses a snapshot whose metadata raft
// cannot read, which raft itself would skip for an older state, unless an
// authentic snapshot is newer: then it is what raft's reaping of old
// snapshots leaves behind when the node is killed meanwhile (before the
// fix, TestRobustness saw a leader killed then refuse to start).
func TestCheckSnapshotsUnreadableMeta(t *testing.T) {
	leader, h, _ := leaderState(t)
	for _, tc := range []struct {
		name     string
		readable uint64 // index of an authentic snapshot in term 2; 0: none
		broken   string // the directory without readable metadata
		refused  bool
	}{
		{"no other snapshot", 0, "2-10-123", true},
		{"older than the authentic one", 20, "2-10-123", false},
		{"older term", 20, "1-30-123", false},
		{"newer than the authentic one", 20, "2-30-123", true},
		{"newer term", 20, "3-10-123", true},
		{"not raft's name", 20, "2-10-123-x", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := openStores(context.Background(), dir, h)
			if err != nil {
				t.Fatal(err)
			}
			defer st.close()
			if tc.readable > 0 {
				storeSnapshot(t, st, leader, tc.readable, 2)
			}
			snapDir := filepath.Join(dir, snapshotDir, tc.broken)
			if err := os.MkdirAll(snapDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(snapDir, "state.bin"), []byte("left over"), 0o600); err != nil {
				t.Fatal(err)
			}
			err = st.checkSnapshots()
			if got := errors.Is(err, ErrTampered); got != tc.refused {
				t.Fatalf("refused = %v (%v), want %v", got, err, tc.refused)
			}
		})
	}
}

// storeSnapshot stores a raft snapshot of s at index and term in st.
func storeSnapshot(t *testing.T, st *stores, s *state.State, index, term uint64) {
	t.Helper()
	sink, err := st.snaps.Create(raft.SnapshotVersionMax, index, term, raft.Configuration{}, 1, offlineTransport())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot(sink); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDeletedMarkStaysUpgraded deletes the mark of an upgraded data
// directory: its authenticated snapshot still says it was upgraded, so no
// window for unauthenticated entries opens again.
func TestDeletedMarkStaysUpgraded(t *testing.T) {
	h := testHSM(t)
	leader, _, _ := leaderState(t)
	dir := oldDataDir(t)
	st, err := openStores(context.Background(), dir, h)
	if err != nil {
		t.Fatal(err)
	}
	storeSnapshot(t, st, leader, 300, 7)
	st.close() // not marked: as if the mark had been deleted

	st, err = openStores(context.Background(), dir, h)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if st.upgrading || st.legacyLast != 0 {
		t.Fatalf("upgrading %v, legacy entries up to %d", st.upgrading, st.legacyLast)
	}
	if format, err := st.stable.Get(formatKey); err != nil || string(format) != formatAuthenticated {
		t.Fatalf("mark %q, %v", format, err)
	}
}

// bufferSink is a raft.SnapshotSink that keeps what is written in memory.
type bufferSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *bufferSink) ID() string    { return "test" }
func (s *bufferSink) Close() error  { s.closed = true; return nil }
func (s *bufferSink) Cancel() error { s.cancelled = true; return nil }

// TestFSMPersistAfterApply takes a snapshot, applies entries before it is
// persisted, as raft may, and restores it on another node: it holds the
// state at the snapshot, not what was applied after it. (Persist running
// during Apply is state's TestCaptureIsolation.)
func TestFSMPersistAfterApply(t *testing.T) {
	s, h, _ := leaderState(t)
	f := newFSM(s, &stores{})
	keyEntry := func(name string, add bool) *state.Entry {
		k, err := crypto.GenerateKey(crypto.AES256, nil)
		if err != nil {
			t.Fatal(err)
		}
		v := s.NextVersion("a", name)
		sealed, err := s.SealKey("a", name, v, k)
		if err != nil {
			t.Fatal(err)
		}
		return &state.Entry{Op: state.OpCreateKey, Enclave: "a", Name: name, Key: &state.KeyArgs{Type: crypto.AES256, Version: v, AddVersion: add, Sealed: sealed}}
	}
	apply := func(index uint64, e *state.Entry) {
		data, err := s.EncodeEntry(e)
		if err != nil {
			t.Error(err)
			return
		}
		if resp := f.Apply(command(index, data)); resp != nil {
			t.Errorf("apply %s %s: %v", e.Op, e.Name, resp)
		}
	}
	apply(10, keyEntry("k1", false))
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// After the snapshot: a new version of k1, then k1 disabled, a new
	// key, a new enclave.
	later := []*state.Entry{
		keyEntry("k1", true),
		{Op: state.OpKeyState, Enclave: "a", Name: "k1", KeyState: &state.KeyStateArgs{All: true, Disabled: true}},
		keyEntry("k2", false),
		{Op: state.OpCreateEnclave, Name: "d"},
	}
	for i, e := range later {
		apply(uint64(11+i), e)
	}
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil || !sink.closed || sink.cancelled {
		t.Fatalf("persist: %v (closed %v, cancelled %v)", err, sink.closed, sink.cancelled)
	}
	if kv, err := s.Key("a", "k1", 0); err != nil || kv.Version != 2 || !kv.Disabled {
		t.Fatalf("k1 on the leader: %+v, %v", kv, err)
	}

	g := newFSM(state.New(h), &stores{})
	if err := g.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if vs, err := g.state.KeyVersions("a", "k1"); err != nil || len(vs) != 1 || vs[0].Disabled {
		t.Errorf("k1 in the snapshot: %+v, %v; want version 1 alone, enabled", vs, err)
	}
	if _, err := g.state.Key("a", "k2", 0); !errors.Is(err, state.ErrKeyNotFound) {
		t.Errorf("k2, created after the snapshot, is in it: %v", err)
	}
	if _, err := g.state.Enclave("d"); !errors.Is(err, state.ErrEnclaveNotFound) {
		t.Errorf("enclave d, created after the snapshot, is in it: %v", err)
	}
}

// BenchmarkFSMApply measures the apply path, as a follower runs it, with
// its failpoint: in a build without -tags failpoints it must cost nothing
// (compare with the same benchmark on a commit without failpoints).
func BenchmarkFSMApply(b *testing.B) {
	s, h, entries := leaderState(b)
	data := make([][]byte, b.N)
	for i := range data {
		var err error
		if data[i], err = s.EncodeEntry(&state.Entry{Op: state.OpCreateEnclave, Name: fmt.Sprintf("e%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	f := newFSM(state.New(h), &stores{})
	for i, e := range entries {
		f.Apply(command(uint64(i+1), e))
	}
	b.ResetTimer()
	for i := range b.N {
		if err, _ := f.Apply(command(uint64(len(entries)+i+1), data[i])).(error); err != nil {
			b.Fatal(err)
		}
	}
}
