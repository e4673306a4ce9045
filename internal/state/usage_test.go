package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/usage"
)

func usageEntry(t testing.TB, s *State, reporter string, seq uint64, vs ...usage.VersionReport) []byte {
	t.Helper()
	data, err := s.EncodeEntry(&Entry{Op: OpUsageReport, Time: time.Now().UTC(), Usage: &usage.Report{Reporter: reporter, Seq: seq, Versions: vs}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func decrypted(name string, version uint32, n uint64) usage.VersionReport {
	return usage.VersionReport{Enclave: DefaultEnclave, Name: name, Version: version, Decrypts: n, LastDecrypt: time.Now().UTC().Truncate(time.Second)}
}

// TestUsageReports applies usage reports of two nodes: they add up per
// version, a report is counted once, versions the state does not have are
// left out, and a deleted version's usage goes with it. Snapshots carry
// the usage, and counters survive a snapshot that replaces the state.
func TestUsageReports(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h) // key k, versions 1 and 2
	for _, tt := range []struct {
		name  string
		entry []byte
		err   error
	}{
		{"node a", usageEntry(t, s, "a", 1, decrypted("k", 1, 3), decrypted("k", 2, 2)), nil},
		{"node b, with a gone version and key", usageEntry(t, s, "b", 1, decrypted("k", 1, 1), decrypted("k", 9, 5), decrypted("gone", 1, 7)), nil},
		{"node a again", usageEntry(t, s, "a", 1, decrypted("k", 1, 3)), nil},
		{"invalid", usageEntry(t, s, "a", 0, decrypted("k", 1, 3)), ErrInvalidArgument},
	} {
		if err := s.Apply(tt.entry); !errors.Is(err, tt.err) {
			t.Fatalf("%s: Apply = %v, want %v", tt.name, err, tt.err)
		}
	}
	if err := s.Apply(mustEncode(t, s, &Entry{Op: OpUsageReport})); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("usage entry without report: %v", err)
	}
	want := map[uint32]uint64{1: 4, 2: 2, 9: 0}
	for v, n := range want {
		if u := usageOf(s, "k", v); u.Decrypts30d != n || (n > 0) == u.LastDecrypt.IsZero() {
			t.Errorf("usage of version %d = %+v, want %d decrypts", v, u, n)
		}
	}
	if u := usageOf(s, "gone", 1); u != (usage.Usage{}) {
		t.Errorf("usage of a key that does not exist = %+v", u)
	}
	if keys := s.KeyUsage(); len(keys) != 1 || keys[0].Name != "k" || keys[0].Decrypts30d != 6 {
		t.Errorf("KeyUsage = %+v", keys)
	}

	// Counters: one per version, shared by every copy of it.
	kv1, _ := s.Key(DefaultEnclave, "k", 1)
	again, _ := s.Key(DefaultEnclave, "k", 1)
	kv2, _ := s.Key(DefaultEnclave, "k", 2)
	if kv1.Usage == nil || kv1.Usage != again.Usage || kv1.Usage == kv2.Usage {
		t.Fatalf("counters %p, %p, %p: want one per version, shared by copies", kv1.Usage, again.Usage, kv2.Usage)
	}
	if n := len(s.UsageCounters()); n != 2 {
		t.Errorf("UsageCounters lists %d versions, want 2", n)
	}

	// A snapshot carries the usage; restoring it keeps the counters.
	snap := snapshotOf(t, s, snapshotEnvelope)
	if err := s.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if kv, _ := s.Key(DefaultEnclave, "k", 1); kv.Usage != kv1.Usage {
		t.Error("restoring a snapshot replaced the counter of a version it kept")
	}
	other := New(h)
	if err := other.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	for v, n := range want {
		if u := usageOf(other, "k", v); u.Decrypts30d != n {
			t.Errorf("restored usage of version %d = %+v, want %d decrypts", v, u, n)
		}
	}
	if !bytes.Equal(snapshotOf(t, other, snapshotEnvelope), snap) {
		t.Error("the snapshot of a restored state differs")
	}
	// The restored table remembers the reports it applied.
	if err := other.Apply(usageEntry(t, other, "a", 1, decrypted("k", 1, 3))); err != nil {
		t.Fatal(err)
	}
	if u := usageOf(other, "k", 1); u.Decrypts30d != 4 {
		t.Errorf("a report applied before the snapshot counted again: %+v", u)
	}

	// Deleting a version drops its usage, and so does deleting the key.
	if err := s.Apply(mustEncode(t, s, &Entry{Op: OpDeleteKey, Enclave: DefaultEnclave, Name: "k", DeleteKey: &DeleteKeyArgs{Version: 1}})); err != nil {
		t.Fatal(err)
	}
	if u := usageOf(s, "k", 1); u != (usage.Usage{}) {
		t.Errorf("usage of a deleted version = %+v", u)
	}
	if u := usageOf(s, "k", 2); u.Decrypts30d != 2 {
		t.Errorf("usage of the version kept = %+v", u)
	}
	if err := s.Apply(mustEncode(t, s, &Entry{Op: OpDeleteKey, Enclave: DefaultEnclave, Name: "k", DeleteKey: &DeleteKeyArgs{All: true}})); err != nil {
		t.Fatal(err)
	}
	if keys := s.KeyUsage(); len(keys) != 0 {
		t.Errorf("usage of a deleted key: %+v", keys)
	}
}

// TestSnapshotWithoutUsage loads a snapshot as the previous version of
// Keep wrote it, without a usage member: it loads, with no usage.
func TestSnapshotWithoutUsage(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	if err := s.Apply(usageEntry(t, s, "a", 1, decrypted("k", 1, 3))); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []envelopeKind{snapshotEnvelope, backupEnvelope} {
		env, _, err := parseEnvelope(snapshotOf(t, s, kind), kind)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]json.RawMessage
		if err := json.Unmarshal(env.body, &body); err != nil {
			t.Fatal(err)
		}
		if body["usage"] == nil {
			t.Fatalf("%s without usage", kind.what)
		}
		delete(body, "usage")
		old, _ := json.Marshal(body)
		var buf bytes.Buffer
		if err := writeEnvelope(&buf, kind, env.sealedRootKey, s.macs.of(kind), rawBody(old)); err != nil {
			t.Fatal(err)
		}
		restored := New(h)
		if err := restored.restore(&buf, kind, false); err != nil {
			t.Fatalf("%s of the previous version: %v", kind.what, err)
		}
		kv, err := restored.Key(DefaultEnclave, "k", 1)
		if err != nil || kv.Usage == nil {
			t.Fatalf("key after restore: %+v, %v", kv, err)
		}
		if u := usageOf(restored, "k", 1); u != (usage.Usage{}) {
			t.Errorf("usage after restoring a %s without any = %+v", kind.what, u)
		}
	}
}

func mustEncode(t testing.TB, s *State, e *Entry) []byte {
	t.Helper()
	e.Time = time.Now().UTC()
	data, err := s.EncodeEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// usageOf returns the usage of a version of a key in the default enclave,
// as KeyInfo shows it.
func usageOf(s *State, name string, version uint32) usage.Usage {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.usage.Usage(usage.ID{Enclave: DefaultEnclave, Name: name, Version: version}, time.Now())
}
