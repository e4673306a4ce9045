package state_test

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/state"
)

// TestCaptureIsolation encodes a captured state while entries of every kind
// that changes keys, policies, identities and settings are applied, and
// checks that what is encoded is exactly the state at the capture. Run it
// with -race: the encoding reads what Apply must no longer change in place.
func TestCaptureIsolation(t *testing.T) {
	s := newState(t)
	const enc = state.DefaultEnclave
	at := time.Unix(1.7e9, 0).UTC()
	mustApply(t, s, &state.Entry{Op: state.OpCreateEnclave, Name: "other"})
	for i := range 2000 {
		mustApply(t, s, keyEntry(t, s, enc, fmt.Sprintf("k%04d", i), false))
	}
	mustApply(t, s, keyEntry(t, s, enc, "k0000", true))
	mustApply(t, s, &state.Entry{Op: state.OpCreatePolicy, Enclave: enc, Name: "p", Policy: &state.PolicyArgs{Allow: map[string][]string{"KEY:GENERATE": {"*"}}}})
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: enc, Name: alice, Identity: &state.IdentityArgs{Privilege: state.User}})
	mustApply(t, s, &state.Entry{Op: state.OpAssignPolicy, Enclave: enc, Name: alice, Assign: "p"})
	mustApply(t, s, &state.Entry{Op: state.OpSetSettings, Settings: map[string]string{"x": "1"}})

	var want bytes.Buffer
	if err := s.Snapshot(&want); err != nil {
		t.Fatal(err)
	}
	c, err := s.Capture()
	if err != nil {
		t.Fatal(err)
	}

	// Every change below reaches into what the capture holds: key rings
	// (versions added, deleted, disabled, scheduled for deletion, rotation
	// periods), whole keys, policies, identities and their links, settings.
	changes := []*state.Entry{
		keyEntry(t, s, enc, "k0000", true),
		{Op: state.OpKeyState, Enclave: enc, Name: "k0001", KeyState: &state.KeyStateArgs{Disabled: true}},
		{Op: state.OpKeyState, Enclave: enc, Name: "k0000", KeyState: &state.KeyStateArgs{All: true, Disabled: true}},
		{Op: state.OpDeleteKey, Enclave: enc, Name: "k0002", Time: at, DeleteKey: &state.DeleteKeyArgs{At: at.Add(time.Hour)}},
		{Op: state.OpKeyRotation, Enclave: enc, Name: "k0003", Rotation: &state.RotationArgs{Every: time.Hour}},
		{Op: state.OpDeleteKey, Enclave: enc, Name: "k0004"},
		{Op: state.OpDeleteKey, Enclave: enc, Name: "k0000", DeleteKey: &state.DeleteKeyArgs{Version: 1}},
		{Op: state.OpCreatePolicy, Enclave: enc, Name: "p", Policy: &state.PolicyArgs{Deny: map[string][]string{"KEY:GENERATE": {"*"}}}},
		{Op: state.OpCreateIdentity, Enclave: enc, By: alice, Name: bob, Identity: &state.IdentityArgs{ServiceAccount: true}},
		{Op: state.OpDeletePolicy, Enclave: enc, Name: "p"},
		{Op: state.OpSetSettings, Settings: map[string]string{"x": "2", "y": "3"}},
		{Op: state.OpDeleteEnclave, Name: "other"},
	}
	for i := range 300 {
		changes = append(changes, keyEntry(t, s, enc, fmt.Sprintf("n%03d", i), false))
	}
	for i := 10; i < 2000; i += 7 {
		changes = append(changes, &state.Entry{Op: state.OpDeleteKey, Enclave: enc, Name: fmt.Sprintf("k%04d", i), DeleteKey: &state.DeleteKeyArgs{All: true}})
	}

	var (
		got     bytes.Buffer
		encoded = make(chan error, 1)
		wg      sync.WaitGroup
	)
	var applied atomic.Bool
	wg.Go(func() {
		for _, e := range changes {
			mustApply(t, s, e)
		}
		applied.Store(true)
	})
	// Reads, and other captures (a backup is one), go on meanwhile.
	for range 2 {
		wg.Go(func() {
			for !applied.Load() {
				if _, _, err := s.Keys(enc, "k", "k1", 100); err != nil {
					t.Error(err)
				}
				if _, err := s.Capture(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	go func() { encoded <- c.Encode(&got) }()
	if err := <-encoded; err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("the capture encodes %d bytes that differ from the %d of the state at the capture", got.Len(), want.Len())
	}
	var now bytes.Buffer
	if err := s.Snapshot(&now); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(now.Bytes(), want.Bytes()) {
		t.Fatal("the changes changed nothing")
	}
	// The capture is the state at its time, again, once the changes are all
	// in: a second encoding of it is the same.
	var again bytes.Buffer
	if err := c.Encode(&again); err != nil || !bytes.Equal(again.Bytes(), want.Bytes()) {
		t.Fatalf("a second encoding of the capture differs (%v)", err)
	}
}

// TestRestoreManyKeys restores a snapshot whose keys are opened on several
// cores (enclaves with thousands of keys, an empty one between them): the
// state is the same, and each key is in its enclave.
func TestRestoreManyKeys(t *testing.T) {
	s := newState(t)
	for _, enc := range []string{"a", "b", "c"} {
		mustApply(t, s, &state.Entry{Op: state.OpCreateEnclave, Name: enc})
	}
	for _, enc := range []string{"a", "c", state.DefaultEnclave} {
		for i := range 1500 {
			mustApply(t, s, keyEntry(t, s, enc, fmt.Sprintf("%s-%04d", enc, i), false))
		}
	}
	var want bytes.Buffer
	if err := s.Snapshot(&want); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(bytes.NewReader(want.Bytes())); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := s.Snapshot(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("the snapshot of the restored state differs")
	}
	for _, enc := range []string{"a", "c", state.DefaultEnclave} {
		list, next, err := s.Keys(enc, "", "", state.MaxPageSize)
		if err != nil || len(list) != 1500 || next != "" || list[0].Name != enc+"-0000" || list[1499].Name != enc+"-1499" {
			t.Fatalf("enclave %s after the restore: %d keys, %q, %v", enc, len(list), next, err)
		}
	}
	if list, _, err := s.Keys("b", "", "", 0); err != nil || len(list) != 0 {
		t.Fatalf("enclave b after the restore: %d keys, %v", len(list), err)
	}
}
