package state

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/hsm"
)

// fuzzHSMKey is a fixed soft HSM key, so that the committed corpora hold
// envelopes and entries that verify and reach past the MAC check.
const fuzzHSMKey = "hsm:aes256:YjGmkM+hdRhr+dkAG3lTCK6J5YVrwtaxKG9WRUsJBjc="

// fuzzState returns a state initialized with a fixed root key under
// fuzzHSMKey, so that the entries in the corpus verify.
func fuzzState(t testing.TB) (*State, hsm.HSM) {
	t.Helper()
	h, err := hsm.ParseSoftKey(fuzzHSMKey)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := h.Seal(context.Background(), bytes.Repeat([]byte{1}, crypto.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	s := New(h)
	root, macs, err := unsealRoot(h, sealed)
	if err != nil {
		t.Fatal(err)
	}
	s.clusterID, s.sealedRootKey, s.rootKey, s.macs = "fuzz", sealed, root, macs
	s.enclaves.set(DefaultEnclave, newEnclave(DefaultEnclave, &Entry{}))
	return s, h
}

// FuzzEntryMAC feeds arbitrary log entries to Apply, which must refuse
// every entry that does not carry the MAC of its contents, never panic,
// and leave a state that still snapshots.
func FuzzEntryMAC(f *testing.F) {
	s, _ := fuzzState(f)
	f.Add([]byte(`{"op":"enclave.create","name":"e"}`))
	f.Add([]byte(`{"op":"enclave.create","name":"e","mac":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`))
	f.Add([]byte(`,"mac":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := s.Apply(data)
		if _, _, ok := splitEntryMAC(data); !ok && !errors.Is(err, ErrNotAuthentic) {
			t.Fatalf("entry without MAC: got %v", err)
		}
		if err := s.Snapshot(new(bytes.Buffer)); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzSnapshotEnvelope feeds arbitrary snapshots and backups (a backup is
// user input) to the envelope decoder: it must refuse or yield a state
// that writes an envelope that opens again.
func FuzzSnapshotEnvelope(f *testing.F) {
	_, h := fuzzState(f)
	f.Add([]byte("KEEPSNAP\x02\x00\x00" + string(make([]byte, macSize)) + `{"format":2}`))
	f.Add([]byte("KEEPBKUP\x02\xff\xff"))
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, kind := range []envelopeKind{snapshotEnvelope, backupEnvelope} {
			o, err := openSnapshot(h, data, kind, true)
			if err != nil {
				continue
			}
			restored, err := o.build(h)
			if err != nil {
				continue
			}
			var buf bytes.Buffer
			if err := restored.write(&buf, kind); err != nil {
				t.Fatal(err)
			}
			if _, err := openSnapshot(h, buf.Bytes(), kind, false); err != nil {
				t.Fatalf("%s written from a restored state does not open: %v", kind.what, err)
			}
		}
	})
}

// TestWriteFuzzCorpus writes the seed corpora of FuzzEntryMAC and
// FuzzSnapshotEnvelope from a state under fuzzHSMKey, when
// KEEP_WRITE_CORPUS is set; they are committed under testdata/fuzz.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("KEEP_WRITE_CORPUS") == "" {
		t.Skip("set KEEP_WRITE_CORPUS=1 to write the corpora")
	}
	s, _ := fuzzState(t)
	var entries [][]byte
	for _, e := range []*Entry{
		{Op: OpCreateEnclave, Name: "e"},
		{Op: OpCreatePolicy, Enclave: DefaultEnclave, Name: "p", Policy: &PolicyArgs{Allow: map[string][]string{"KEY:GENERATE": {"*"}}}},
		{Op: OpCreateIdentity, Enclave: DefaultEnclave, Name: testID, Identity: &IdentityArgs{Privilege: Admin}},
		{Op: OpCreateKey, Enclave: DefaultEnclave, Name: "k", Key: &KeyArgs{Type: crypto.AES256, Version: 1}},
	} {
		if e.Key != nil {
			k, _ := crypto.GenerateKey(crypto.AES256, nil)
			e.Key.Sealed, _ = s.SealKey(e.Enclave, e.Name, 1, k)
		}
		data, err := s.EncodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, data)
	}
	writeCorpus(t, "FuzzEntryMAC", entries...)
	for _, data := range entries {
		if err := s.Apply(data); err != nil {
			t.Fatal(err)
		}
	}
	var snap, backup bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := s.Backup(&backup); err != nil {
		t.Fatal(err)
	}
	writeCorpus(t, "FuzzSnapshotEnvelope", snap.Bytes(), backup.Bytes())
}

func writeCorpus(t *testing.T, target string, inputs ...[]byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, in := range inputs {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(in)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed"+strconv.Itoa(i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
