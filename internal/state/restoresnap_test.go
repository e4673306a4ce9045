package state

import (
	"bytes"
	"testing"
)

// TestRestoreSnapshot checks that the snapshot RestoreSnapshot makes of a
// restore entry is the state that applying the entry makes, and that it
// refuses what Apply refuses, with the same error, leaving the state as it
// was.
func TestRestoreSnapshot(t *testing.T) {
	h := testHSM(t)
	source, _ := populated(t, h)
	backup := snapshotOf(t, source, backupEnvelope)
	tampered := bytes.Clone(backup)
	tampered[len(tampered)-2] ^= 1
	other, _ := populated(t, testHSM(t))

	// fresh returns twin states of one cluster: the same log applied to
	// each; notFresh adds a write.
	twins := func(notFresh bool) (*State, *State) {
		init := initEntry(t, h)
		a, b := New(h), New(h)
		for _, s := range []*State{a, b} {
			if err := s.Apply(init); err != nil {
				t.Fatal(err)
			}
		}
		if notFresh {
			e, err := a.EncodeEntry(&Entry{Op: OpCreateEnclave, Name: "taken"})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []*State{a, b} {
				if err := s.Apply(e); err != nil {
					t.Fatal(err)
				}
			}
		}
		return a, b
	}
	tests := []struct {
		name     string
		entry    Entry
		notFresh bool
		wantErr  bool
	}{
		{name: "backup", entry: Entry{Op: OpRestore, Restore: backup}},
		{name: "backup of the same cluster", entry: Entry{Op: OpRestore, Restore: snapshotOf(t, source, backupEnvelope)}},
		{name: "tampered", entry: Entry{Op: OpRestore, Restore: tampered}, wantErr: true},
		{name: "raft snapshot", entry: Entry{Op: OpRestore, Restore: snapshotOf(t, source, snapshotEnvelope)}, wantErr: true},
		{name: "other HSM key", entry: Entry{Op: OpRestore, Restore: snapshotOf(t, other, backupEnvelope)}, wantErr: true},
		{name: "legacy flag, authentic backup", entry: Entry{Op: OpRestore, Restore: backup, RestoreLegacy: true}},
		{name: "legacy flag, tampered", entry: Entry{Op: OpRestore, Restore: tampered, RestoreLegacy: true}, wantErr: true},
		{name: "not fresh", entry: Entry{Op: OpRestore, Restore: backup}, notFresh: true, wantErr: true},
		{name: "empty", entry: Entry{Op: OpRestore}, wantErr: true},
		{name: "not a restore", entry: Entry{Op: OpCreateEnclave, Name: "e"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, applied := twins(tt.notFresh)
			before := snapshotOf(t, s, snapshotEnvelope)
			data, err := s.EncodeEntry(&tt.entry)
			if err != nil {
				t.Fatal(err)
			}
			if got := IsRestoreEntry(data); got != (tt.entry.Op == OpRestore) {
				t.Fatalf("IsRestoreEntry = %v", got)
			}
			var snap bytes.Buffer
			err = s.RestoreSnapshot(data, &snap)
			if (err != nil) != tt.wantErr {
				t.Fatalf("RestoreSnapshot: %v, want error %v", err, tt.wantErr)
			}
			if after := snapshotOf(t, s, snapshotEnvelope); !bytes.Equal(before, after) {
				t.Fatal("RestoreSnapshot changed the state")
			}
			applyErr := applied.Apply(data)
			if err != nil {
				if tt.entry.Op == OpRestore && (applyErr == nil || applyErr.Error() != err.Error()) {
					t.Fatalf("RestoreSnapshot: %v; Apply: %v", err, applyErr)
				}
				return
			}
			if applyErr != nil {
				t.Fatalf("Apply: %v", applyErr)
			}
			// The snapshot restores on a node of the cluster, and is the
			// state that applying the entry made, byte for byte.
			if err := s.Restore(bytes.NewReader(snap.Bytes())); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if got, want := snapshotOf(t, s, snapshotEnvelope), snapshotOf(t, applied, snapshotEnvelope); !bytes.Equal(got, want) {
				t.Fatalf("restored snapshot differs from the applied entry:\n%s\n%s", got, want)
			}
			if !bytes.Equal(snap.Bytes(), snapshotOf(t, applied, snapshotEnvelope)) {
				t.Fatal("the snapshot is not the one of the applied state")
			}
		})
	}
}
