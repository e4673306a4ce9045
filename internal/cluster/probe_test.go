package cluster

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/state"
)

// snapshotWith stores a snapshot of data in st, taken at index 10 with
// conf as the cluster's configuration.
func snapshotWith(t testing.TB, st *stores, conf raft.Configuration, write func(raft.SnapshotSink) error) {
	t.Helper()
	sink, err := st.snaps.Create(raft.SnapshotVersionMax, 10, 1, conf, 5, offlineTransport())
	if err != nil {
		t.Fatal(err)
	}
	if err := write(sink); err != nil {
		t.Fatal(err)
	}
}

// TestConfigurationDoesNotRestore: a node finds itself in the cluster's
// configuration from the snapshot's metadata, without restoring the
// snapshot into a throwaway state first (which doubled a restart's time).
// The snapshot here is not one a state can restore: reading the
// configuration must not need it to be.
func TestConfigurationDoesNotRestore(t *testing.T) {
	k := testHSM(t)
	st, err := openStores(context.Background(), "", k)
	if err != nil {
		t.Fatal(err)
	}
	want := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "7", Address: "10.0.0.7:7373"}}}
	snapshotWith(t, st, want, func(sink raft.SnapshotSink) error {
		if _, err := io.WriteString(sink, "not a state"); err != nil {
			return err
		}
		return sink.Close()
	})
	got, err := configuration(Config{Keyring: k}, st)
	if err != nil {
		t.Fatalf("configuration: %v", err)
	}
	if len(got.Servers) != 1 || got.Servers[0] != want.Servers[0] {
		t.Errorf("configuration = %+v, want %+v", got, want)
	}
}

// BenchmarkRestartProbe compares what a restart pays to find the node in
// its cluster's configuration (probe) with the restore of the snapshot
// that follows it (restore), for a snapshot of 20,000 keys: the probe
// must cost a small fraction of the restore, not as much again.
func BenchmarkRestartProbe(b *testing.B) {
	s, h, _ := leaderState(b)
	f := newFSM(s, &stores{})
	for i := range 20000 {
		name := fmt.Sprintf("k%d", i)
		key, err := crypto.GenerateKey(crypto.AES256, nil)
		if err != nil {
			b.Fatal(err)
		}
		sealed, err := s.SealKey("a", name, 1, key)
		if err != nil {
			b.Fatal(err)
		}
		data, err := s.EncodeEntry(&state.Entry{Op: state.OpCreateKey, Enclave: "a", Name: name, Key: &state.KeyArgs{Type: crypto.AES256, Version: 1, Sealed: sealed}})
		if err != nil {
			b.Fatal(err)
		}
		if resp := f.Apply(command(uint64(10+i), data)); resp != nil {
			b.Fatal(resp)
		}
	}
	snap, err := f.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	st, err := openStores(context.Background(), "", h)
	if err != nil {
		b.Fatal(err)
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "0", Address: "10.0.0.1:7373"}}}
	snapshotWith(b, st, conf, snap.Persist)
	b.Run("probe", func(b *testing.B) {
		for b.Loop() {
			if _, err := configuration(Config{Keyring: h}, st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("restore", func(b *testing.B) {
		list, err := st.snaps.List()
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			_, rc, err := st.snaps.Open(list[0].ID)
			if err != nil {
				b.Fatal(err)
			}
			if err := newFSM(state.New(h), &stores{}).Restore(rc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
