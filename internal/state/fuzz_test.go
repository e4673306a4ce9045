package state_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/state"
	"github.com/keep-kms/keep/internal/usage"
)

// FuzzApply feeds arbitrary entries to an initialized state, unauthenticated
// as in a data directory being upgraded (FuzzEntryMAC tries the MAC):
// ApplyLegacy must reject what it cannot apply, never panic, and leave a
// state that still snapshots.
func FuzzApply(f *testing.F) {
	for _, e := range []*state.Entry{
		{Op: state.OpCreateEnclave, Name: "e"},
		{Op: state.OpDeleteKey, Enclave: state.DefaultEnclave, Name: "k", DeleteKey: &state.DeleteKeyArgs{Version: 2}},
		{Op: state.OpCreatePolicy, Enclave: state.DefaultEnclave, Name: "p", Policy: &state.PolicyArgs{Allow: map[string][]string{"KEY:GENERATE": {"*"}}}},
		{Op: state.OpCreateIdentity, Enclave: state.DefaultEnclave, Name: alice, Identity: &state.IdentityArgs{Privilege: state.User, ServiceAccount: true}},
		{Op: state.OpRestore, Restore: []byte(`{"format":1}`)},
		{Op: state.OpDeleteKey, Enclave: state.DefaultEnclave, Name: "k", DeleteKey: &state.DeleteKeyArgs{All: true, At: time.Unix(1e9, 0)}},
		{Op: state.OpCancelDeleteKey, Enclave: state.DefaultEnclave, Name: "k", DeleteKey: &state.DeleteKeyArgs{Version: 1}},
		{Op: state.OpKeyState, Enclave: state.DefaultEnclave, Name: "k", KeyState: &state.KeyStateArgs{All: true, Disabled: true}},
		{Op: state.OpDestroyKey, Enclave: state.DefaultEnclave, Name: "k", Destroy: &state.DestroyKeyArgs{Version: 1, DeleteAt: time.Unix(1e9, 0)}},
		{Op: state.OpKeyRotation, Enclave: state.DefaultEnclave, Name: "k", Rotation: &state.RotationArgs{Every: time.Hour}},
		{Op: state.OpUsageReport, Time: time.Unix(1e9, 0), Usage: &usage.Report{Reporter: "a", Seq: 1, Versions: []usage.VersionReport{
			{Enclave: state.DefaultEnclave, Name: "k", Version: 1, Decrypts: 2, LastDecrypt: time.Unix(1e9, 0)},
		}}},
	} {
		data, _ := json.Marshal(e)
		f.Add(data)
	}
	f.Add([]byte(`{"op":"key.create","enclave":"default","name":"k","key":{"type":"AES256","sealed":"AAAA"}}`))
	f.Add([]byte(`{"op":`))
	s := newState(f)
	k, _ := crypto.GenerateKey(crypto.AES256, nil)
	kes, _ := json.Marshal(kesEntry(f, s, "kes", k, bytes.Repeat([]byte{1}, 32), true))
	f.Add(kes)
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = s.ApplyLegacy(data)
		if err := s.Snapshot(new(bytes.Buffer)); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzRestore feeds arbitrary snapshots (backups are user input) to
// RestoreLegacy, which reads format 1 as well as the authenticated
// envelope: it must fail cleanly or produce a state that snapshots again.
func FuzzRestore(f *testing.F) {
	s := newState(f)
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		f.Fatal(err)
	}
	f.Add(snap.Bytes())
	f.Add([]byte(`{"format":1,"cluster_id":"x","sealed_root_key":"AAAA"}`))
	f.Add([]byte(`{"format":1,"enclaves":[{"Name":"e","keys":[{"name":"k","versions":[{"version":1,"type":"AES256","sealed":"AAAA"}]}]}]}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`{"format":1,"cluster_id":"x","usage":{"today":"2026-12-06","versions":[{"enclave":"e","name":"k","version":1,"days":[{"day":"2026-12-06","decrypts":1}]}],"reporters":[{"reporter":"a","seq":1,"day":"2026-12-06"}]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := s.RestoreLegacy(bytes.NewReader(data)); err != nil {
			return
		}
		if err := s.Snapshot(new(bytes.Buffer)); err != nil {
			t.Fatal(err)
		}
	})
}
