package state

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/hsm"
)

const testID = "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0"

func testHSM(t testing.TB) hsm.HSM {
	t.Helper()
	key, err := hsm.GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hsm.ParseSoftKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// initEntry returns an authenticated init entry with a fresh root key.
func initEntry(t testing.TB, h hsm.HSM) []byte {
	t.Helper()
	root, err := crypto.GenerateKey(crypto.AES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := h.Seal(context.Background(), root.Material())
	if err != nil {
		t.Fatal(err)
	}
	data, err := New(h).EncodeEntry(&Entry{Op: OpInit, Init: &InitArgs{ClusterID: "c", SealedRootKey: sealed}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// populated returns an initialized state with a key of two versions, a
// policy and an identity, and the entries that made it.
func populated(t testing.TB, h hsm.HSM) (*State, [][]byte) {
	t.Helper()
	s := New(h)
	entries := [][]byte{initEntry(t, h)}
	if err := s.Apply(entries[0]); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*Entry{
		{Op: OpCreateKey, Enclave: DefaultEnclave, Name: "k", Key: &KeyArgs{Type: crypto.AES256}},
		{Op: OpCreateKey, Enclave: DefaultEnclave, Name: "k", Key: &KeyArgs{Type: crypto.ChaCha20, AddVersion: true}},
		{Op: OpCreatePolicy, Enclave: DefaultEnclave, Name: "p", Policy: &PolicyArgs{Allow: map[string][]string{"KEY:GENERATE": {"*"}}}},
		{Op: OpCreateIdentity, Enclave: DefaultEnclave, Name: testID, Identity: &IdentityArgs{Privilege: User}},
	} {
		if e.Key != nil {
			k, err := crypto.GenerateKey(e.Key.Type, nil)
			if err != nil {
				t.Fatal(err)
			}
			e.Key.Version = s.NextVersion(e.Enclave, e.Name)
			if e.Key.Sealed, err = s.SealKey(e.Enclave, e.Name, e.Key.Version, k); err != nil {
				t.Fatal(err)
			}
		}
		e.Time = time.Unix(1e9, 0).UTC()
		data, err := s.EncodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Apply(data); err != nil {
			t.Fatalf("apply %s: %v", e.Op, err)
		}
		entries = append(entries, data)
	}
	return s, entries
}

func snapshotOf(t testing.TB, s *State, kind envelopeKind) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.write(&buf, kind); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestEntryTampering flips every byte of every entry: each must be refused
// (never applied), and the untouched entries must still apply.
func TestEntryTampering(t *testing.T) {
	h := testHSM(t)
	_, entries := populated(t, h)
	for i, data := range entries {
		for off := range data {
			s := New(h)
			for _, prev := range entries[:i] {
				if err := s.Apply(prev); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshotOf(t, s, snapshotEnvelope)
			bad := bytes.Clone(data)
			bad[off] ^= 0x01
			if err := s.Apply(bad); !errors.Is(err, ErrNotAuthentic) {
				t.Fatalf("entry %d with byte %d flipped: got %v, want %v", i, off, err, ErrNotAuthentic)
			}
			if after := snapshotOf(t, s, snapshotEnvelope); i > 0 && !bytes.Equal(before, after) {
				t.Fatalf("entry %d with byte %d flipped changed the state", i, off)
			}
		}
	}
}

func TestEntryAuthentication(t *testing.T) {
	h := testHSM(t)
	s, entries := populated(t, h)
	other, _ := populated(t, h) // same HSM, another root key

	policy := &Entry{Op: OpCreatePolicy, Enclave: DefaultEnclave, Name: "q", Policy: &PolicyArgs{}}
	legacy, _ := json.Marshal(policy)
	foreign, err := other.EncodeEntry(policy)
	if err != nil {
		t.Fatal(err)
	}
	forgedInit := initEntry(t, testHSM(t)) // a root key another HSM sealed

	tests := []struct {
		name   string
		data   []byte
		legacy bool
		want   error
	}{
		{"legacy entry refused", legacy, false, ErrNotAuthentic},
		{"legacy entry accepted in upgrade", legacy, true, nil},
		{"entry of another root key", foreign, false, ErrNotAuthentic},
		{"entry of another root key, upgrade", foreign, true, ErrNotAuthentic},
		{"replayed init", entries[0], false, ErrAlreadyInitialized},
		{"init of another HSM", forgedInit, false, ErrNotAuthentic},
		{"MAC member cut off", entries[3][:len(entries[3])-entryMACSuffixLen], false, ErrNotAuthentic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.legacy {
				err = s.ApplyLegacy(tt.data)
			} else {
				err = s.Apply(tt.data)
			}
			if !errors.Is(err, tt.want) && (tt.want != nil || err != nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	// A fresh state refuses an init entry sealed by another HSM.
	if err := New(h).Apply(forgedInit); !errors.Is(err, ErrNotAuthentic) {
		t.Fatalf("forged init on a fresh state: got %v", err)
	}
}

func TestVersionConflict(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	k, _ := crypto.GenerateKey(crypto.AES256, nil)
	sealed, err := s.SealKey(DefaultEnclave, "k", 2, k) // version 2 exists; the next is 3
	if err != nil {
		t.Fatal(err)
	}
	data, err := s.EncodeEntry(&Entry{Op: OpCreateKey, Enclave: DefaultEnclave, Name: "k", Key: &KeyArgs{Type: crypto.AES256, AddVersion: true, Version: 2, Sealed: sealed}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(data); !errors.Is(err, ErrVersionConflict) || !errors.Is(err, ErrKeyExists) {
		t.Fatalf("got %v, want %v", err, ErrVersionConflict)
	}
}

// TestEnvelopeTampering flips every byte of a snapshot and of a backup:
// each must be refused and leave the state as it was.
func TestEnvelopeTampering(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	for _, kind := range []envelopeKind{snapshotEnvelope, backupEnvelope} {
		data := snapshotOf(t, s, kind)
		target, _ := populated(t, h)
		before := snapshotOf(t, target, snapshotEnvelope)
		for off := range data {
			bad := bytes.Clone(data)
			bad[off] ^= 0x80
			if err := target.restore(bytes.NewReader(bad), kind, false); err == nil {
				t.Fatalf("%s with byte %d flipped was restored", kind.what, off)
			}
		}
		if err := target.restore(bytes.NewReader(data[:len(data)-1]), kind, false); err == nil {
			t.Fatalf("truncated %s was restored", kind.what)
		}
		if after := snapshotOf(t, target, snapshotEnvelope); !bytes.Equal(before, after) {
			t.Fatalf("refused %ss changed the state", kind.what)
		}
		if err := target.restore(bytes.NewReader(data), kind, false); err != nil {
			t.Fatalf("genuine %s: %v", kind.what, err)
		}
	}
}

func TestEnvelopeRefusals(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	snap := snapshotOf(t, s, snapshotEnvelope)
	backup := snapshotOf(t, s, backupEnvelope)

	// An identity with SysAdmin privilege appended to the JSON, the MAC
	// left as it was: what an attacker without the HSM key can do.
	env, _, err := parseEnvelope(backup, backupEnvelope)
	if err != nil {
		t.Fatal(err)
	}
	var body snapshot
	if err := json.Unmarshal(env.body, &body); err != nil {
		t.Fatal(err)
	}
	body.Identities = append(body.Identities, Identity{ID: "h1:8dWUSbcnFl3nMr8oMzgSK5liimFZGP7cZ9h4__z0fac", Enclave: DefaultEnclave, Privilege: SysAdmin})
	injected, _ := json.Marshal(&body)
	injectedBackup := append(append(bytes.Clone(env.signed), env.mac...), injected...)

	body.Format = legacySnapshotFormat
	legacy, _ := json.Marshal(&body)

	empty := snapshotOf(t, New(h), snapshotEnvelope)
	emptyWithState := append(bytes.Clone(empty[:len(empty)-len(`{"format":2,"cluster_id":"","sealed_root_key":null,"enclaves":null,"identities":null}`)]), injected...)

	tests := []struct {
		name   string
		data   []byte
		kind   envelopeKind
		legacy bool
		want   error // nil: restored
	}{
		{"snapshot as snapshot", snap, snapshotEnvelope, false, nil},
		{"snapshot as backup", snap, backupEnvelope, false, ErrLegacyBackup},
		{"backup as snapshot", backup, snapshotEnvelope, false, ErrNotAuthentic},
		{"backup with injected SysAdmin", injectedBackup, backupEnvelope, false, ErrNotAuthentic},
		{"legacy backup without the flag", legacy, backupEnvelope, false, ErrLegacyBackup},
		{"legacy snapshot outside an upgrade", legacy, snapshotEnvelope, false, ErrNotAuthentic},
		// Format 1 with the flag is read, but its material must be sealed
		// as format 1 sealed it: relabelling a backup does not unseal.
		{"relabelled backup with the flag", legacy, backupEnvelope, true, crypto.ErrDecrypt},
		{"empty snapshot", empty, snapshotEnvelope, false, nil},
		{"state in an envelope without root key", emptyWithState, snapshotEnvelope, false, ErrNotAuthentic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := New(h).restore(bytes.NewReader(tt.data), tt.kind, tt.legacy)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestKeyAAD moves sealed material to another version and type number in
// a snapshot whose MAC is then computed again, as only a holder of the
// HSM key could: the AAD still refuses it. The snapshot restores, since
// material is unsealed on first use, but the moved version does not serve:
// ErrUnseal (a server failure), never the client's crypto.ErrDecrypt, and
// the versions left alone serve.
func TestKeyAAD(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	snap := snapshotOf(t, s, snapshotEnvelope)
	env, _, err := parseEnvelope(snap, snapshotEnvelope)
	if err != nil {
		t.Fatal(err)
	}
	remac := func(kind envelopeKind, change func(v []snapshotVersion)) []byte {
		var body snapshot
		if err := json.Unmarshal(env.body, &body); err != nil {
			t.Fatal(err)
		}
		k := &body.Enclaves[0].Keys[0]
		change(k.Versions)
		for _, v := range k.Versions { // a renumbered version is still a valid one
			k.Next = max(k.Next, v.Version+1)
		}
		b, _ := json.Marshal(&body)
		var buf bytes.Buffer
		if err := writeEnvelope(&buf, kind, env.sealedRootKey, s.macs.of(kind), rawBody(b)); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	tests := []struct {
		name           string
		change         func(v []snapshotVersion)
		broken, serves []uint32 // versions of key k after the change
	}{
		{"versions swapped", func(v []snapshotVersion) { v[0].Sealed, v[1].Sealed = v[1].Sealed, v[0].Sealed }, []uint32{1, 2}, nil},
		{"version renumbered", func(v []snapshotVersion) { v[1].Version = 7 }, []uint32{7}, []uint32{1}},
		{"type changed", func(v []snapshotVersion) { v[1].Type = crypto.AES256 }, []uint32{2}, []uint32{1}}, // was ChaCha20
		{"unchanged", func([]snapshotVersion) {}, nil, []uint32{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A backup comes from an operator: it is refused whole if
			// one version does not unseal.
			r := New(h)
			err := r.restore(bytes.NewReader(remac(backupEnvelope, tt.change)), backupEnvelope, false)
			if len(tt.broken) > 0 && !errors.Is(err, crypto.ErrDecrypt) || len(tt.broken) == 0 && err != nil {
				t.Fatalf("restore of the backup: %v, want it refused: %v", err, len(tt.broken) > 0)
			}
			if len(tt.broken) > 0 && r.Initialized() {
				t.Fatal("the refused backup changed the state")
			}
			// A raft snapshot is restored, and what does not unseal
			// fails at first use.
			r = New(h)
			if err := r.Restore(bytes.NewReader(remac(snapshotEnvelope, tt.change))); err != nil {
				t.Fatalf("restore: %v", err)
			}
			for _, v := range tt.broken {
				if _, err := r.Key(DefaultEnclave, "k", v); !errors.Is(err, ErrUnseal) || errors.Is(err, crypto.ErrDecrypt) {
					t.Errorf("version %d: got %v, want ErrUnseal", v, err)
				}
			}
			for _, v := range tt.serves {
				if kv, err := r.Key(DefaultEnclave, "k", v); err != nil || kv.Key == (crypto.Key{}) {
					t.Errorf("version %d: %+v, %v", v, kv, err)
				}
			}
		})
	}
}

// TestLegacyUpgrade reads a format 1 snapshot whose key material is sealed
// under the legacy AAD, and a legacy key entry: the keys unseal, and the
// next snapshot is authenticated, its material sealed under the new AAD.
func TestLegacyUpgrade(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	want, err := s.Key(DefaultEnclave, "k", 2)
	if err != nil {
		t.Fatal(err)
	}

	// The snapshot as the previous version of Keep wrote it.
	var body snapshot
	env, _, _ := parseEnvelope(snapshotOf(t, s, snapshotEnvelope), snapshotEnvelope)
	if err := json.Unmarshal(env.body, &body); err != nil {
		t.Fatal(err)
	}
	body.Format = legacySnapshotFormat
	for _, k := range body.Enclaves[0].Keys {
		for i, v := range k.Versions {
			kv, _ := s.Key(DefaultEnclave, k.Name, v.Version)
			k.Versions[i].Sealed, _ = s.rootKey.Encrypt(0, kv.Key.Material(), legacyKeyAAD(DefaultEnclave, k.Name))
		}
	}
	legacy, _ := json.Marshal(&body)
	// A legacy entry that adds version 3, sealed as the previous version
	// of Keep sealed (for the key's name only).
	legacyEntry, _ := json.Marshal(&Entry{Op: OpCreateKey, Enclave: DefaultEnclave, Name: "k", Key: &KeyArgs{
		Type: crypto.AES256, AddVersion: true, Sealed: body.Enclaves[0].Keys[0].Versions[0].Sealed,
	}})

	upgraded := New(h)
	if err := upgraded.Restore(bytes.NewReader(legacy)); !errors.Is(err, ErrNotAuthentic) {
		t.Fatalf("legacy snapshot outside an upgrade: got %v", err)
	}
	if err := upgraded.RestoreLegacy(bytes.NewReader(legacy)); err != nil {
		t.Fatal(err)
	}
	got, err := upgraded.Key(DefaultEnclave, "k", 2)
	if err != nil || !bytes.Equal(got.Key.Material(), want.Key.Material()) || got.Key.Type() != crypto.ChaCha20 {
		t.Fatalf("key after upgrade: %v", err)
	}

	// A legacy entry in the log of an upgraded directory: its material is
	// sealed again as well.
	if err := upgraded.ApplyLegacy(legacyEntry); err != nil {
		t.Fatal(err)
	}

	again := New(h)
	if err := again.Restore(bytes.NewReader(snapshotOf(t, upgraded, snapshotEnvelope))); err != nil {
		t.Fatalf("snapshot after upgrade: %v", err)
	}
	for v := uint32(1); v <= 3; v++ {
		if _, err := again.Key(DefaultEnclave, "k", v); err != nil {
			t.Fatalf("version %d after upgrade: %v", v, err)
		}
	}
}

func TestSplitEntryMAC(t *testing.T) {
	mac := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, macSize))
	tests := []struct {
		name string
		data string
		ok   bool
	}{
		{"authenticated", `{"op":"x"` + entryMACPrefix + mac + `"}`, true},
		{"legacy", `{"op":"x"}`, false},
		{"empty", ``, false},
		{"only the member", entryMACPrefix + mac + `"}`, false},
		{"short MAC", `{"op":"x"` + entryMACPrefix + mac[4:] + `"}`, false},
		{"non-canonical base64", `{"op":"x"` + entryMACPrefix + mac[:42] + `F="}`, false},
		{"not base64", `{"op":"x"` + entryMACPrefix + strings.Repeat("!", len(mac)) + `"}`, false},
		{"no closing quote", `{"op":"x"` + entryMACPrefix + mac + `x}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, got, ok := splitEntryMAC([]byte(tt.data))
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && (string(body) != `{"op":"x"` || len(got) != macSize) {
				t.Fatalf("body %q, MAC of %d bytes", body, len(got))
			}
		})
	}
}

func TestParseEnvelope(t *testing.T) {
	mac := string(make([]byte, macSize))
	tests := []struct {
		name    string
		data    string
		ok      bool
		wantErr bool
		sealed  string
		body    string
	}{
		{"envelope", "KEEPSNAP\x02\x00\x03abc" + mac + "{}", true, false, "abc", "{}"},
		{"no root key", "KEEPSNAP\x02\x00\x00" + mac + "{}", true, false, "", "{}"},
		{"legacy JSON", `{"format":1}`, false, false, "", ""},
		{"other kind", "KEEPBKUP\x02\x00\x00" + mac, false, false, "", ""},
		{"unknown format", "KEEPSNAP\x03\x00\x00" + mac, true, true, "", ""},
		{"truncated header", "KEEPSNAP\x02\x00", true, true, "", ""},
		{"root key beyond the end", "KEEPSNAP\x02\xff\xff" + mac, true, true, "", ""},
		{"truncated MAC", "KEEPSNAP\x02\x00\x00" + mac[1:], true, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, ok, err := parseEnvelope([]byte(tt.data), snapshotEnvelope)
			if ok != tt.ok || (err != nil) != tt.wantErr {
				t.Fatalf("ok %v, err %v", ok, err)
			}
			if ok && err == nil && (string(env.sealedRootKey) != tt.sealed || string(env.body) != tt.body || len(env.mac) != macSize) {
				t.Fatalf("parsed %+v", env)
			}
		})
	}
}

// TestWriteBeforeRestore applies a write proposed under the root key that
// a restore then replaced: it fails as a write, not as tampering, also on
// a node that restarts from a snapshot taken between the two.
func TestWriteBeforeRestore(t *testing.T) {
	h := testHSM(t)
	source, _ := populated(t, h)
	backup := snapshotOf(t, source, backupEnvelope)

	s := New(h)
	if err := s.Apply(initEntry(t, h)); err != nil {
		t.Fatal(err)
	}
	stale, err := s.EncodeEntry(&Entry{Op: OpCreateEnclave, Name: "stale"})
	if err != nil {
		t.Fatal(err)
	}
	restore, err := s.EncodeEntry(&Entry{Op: OpRestore, Restore: backup})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(restore); err != nil {
		t.Fatal(err)
	}
	restarted := New(h)
	if err := restarted.Restore(bytes.NewReader(snapshotOf(t, s, snapshotEnvelope))); err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]*State{"running": s, "restarted from a snapshot": restarted} {
		err := st.Apply(stale)
		if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrNotAuthentic) {
			t.Errorf("%s: got %v, want %v", name, err, ErrInvalidArgument)
		}
	}
}

// rawBody is the body of an envelope that writes p.
func rawBody(p []byte) func(*bodyWriter) { return func(b *bodyWriter) { b.write(p) } }
