package state

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/hsm"
)

// TestMainSnapshot restores a raft snapshot and a backup that Keep wrote
// before the state kept sorted indexes and copy-on-write key rings
// (testdata/main-snapshot: enclaves, keys of several versions, disabled,
// pending deletion, rotated and imported, policies, identities with a
// service account, settings; sealed under the test HSM key beside them),
// and writes them again: the bytes must be the same.
func TestMainSnapshot(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "main-snapshot", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	h, err := hsm.ParseSoftKey(strings.TrimSpace(string(read("hsm-key"))))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []envelopeKind{snapshotEnvelope, backupEnvelope} {
		file := map[envelopeKind]string{snapshotEnvelope: "snapshot", backupEnvelope: "backup"}[kind]
		want := read(file)
		s := New(h)
		if err := s.restore(bytes.NewReader(want), kind, false); err != nil {
			t.Fatalf("%s of main: %v", file, err)
		}
		if got := snapshotOf(t, s, kind); !bytes.Equal(got, want) {
			t.Errorf("the %s of main, restored, is written as %d bytes that differ from its %d", file, len(got), len(want))
		}
		if list, next, err := s.Keys(DefaultEnclave, "minio-", "minio-10", 1); err != nil || len(list) != 1 || list[0].Name != "minio-10" || next != "minio-2" {
			t.Errorf("%s of main: a page of keys = %+v, %q, %v", file, list, next, err)
		}
	}
}
