package state_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/state"
)

// TestKeyStateEntries applies the lifecycle entries to a key of three
// versions, each step checking the states of the versions after it, and
// that a refused entry changes nothing.
func TestKeyStateEntries(t *testing.T) {
	s := newState(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v := uint32(1); v <= 3; v++ {
		k, _ := crypto.GenerateKey(crypto.AES256, nil)
		sealed, err := s.SealKey(state.DefaultEnclave, "k", v, k)
		if err != nil {
			t.Fatal(err)
		}
		mustApply(t, s, &state.Entry{Op: state.OpCreateKey, Time: t0, Enclave: state.DefaultEnclave, Name: "k", Key: &state.KeyArgs{Type: crypto.AES256, Version: v, AddVersion: v > 1, Sealed: sealed}})
	}
	at := t0.Add(time.Hour)
	entry := func(op state.Op, edit func(e *state.Entry)) *state.Entry {
		e := &state.Entry{Op: op, Time: t0, Enclave: state.DefaultEnclave, Name: "k"}
		edit(e)
		return e
	}
	const a, d, p = state.StateActive, state.StateDisabled, state.StatePendingDeletion
	steps := []struct {
		name  string
		entry *state.Entry
		ok    bool
		want  []state.VersionState // versions 1, 2, 3; nil: the key is gone
	}{
		{"schedule the latest", entry(state.OpDeleteKey, func(e *state.Entry) { e.DeleteKey = &state.DeleteKeyArgs{At: at} }), true, []state.VersionState{a, a, p}},
		{"schedule it again", entry(state.OpDeleteKey, func(e *state.Entry) { e.DeleteKey = &state.DeleteKeyArgs{At: at.Add(time.Hour)} }), false, []state.VersionState{a, a, p}},
		{"schedule in the past", entry(state.OpDeleteKey, func(e *state.Entry) { e.DeleteKey = &state.DeleteKeyArgs{Version: 1, At: t0} }), false, []state.VersionState{a, a, p}},
		{"disable version 2", entry(state.OpKeyState, func(e *state.Entry) { e.KeyState = &state.KeyStateArgs{Version: 2, Disabled: true} }), true, []state.VersionState{a, d, p}},
		{"schedule all", entry(state.OpDeleteKey, func(e *state.Entry) { e.DeleteKey = &state.DeleteKeyArgs{All: true, At: at} }), true, []state.VersionState{p, p, p}},
		{"cancel all", entry(state.OpCancelDeleteKey, func(e *state.Entry) { e.DeleteKey = &state.DeleteKeyArgs{All: true} }), true, []state.VersionState{a, d, a}},
		{"cancel what is not pending", entry(state.OpCancelDeleteKey, func(e *state.Entry) { e.DeleteKey = &state.DeleteKeyArgs{Version: 1} }), false, []state.VersionState{a, d, a}},
		{"disable a version that does not exist", entry(state.OpKeyState, func(e *state.Entry) { e.KeyState = &state.KeyStateArgs{Version: 9, Disabled: true} }), false, []state.VersionState{a, d, a}},
		{"version and all", entry(state.OpKeyState, func(e *state.Entry) { e.KeyState = &state.KeyStateArgs{Version: 1, All: true} }), false, []state.VersionState{a, d, a}},
		{"enable all", entry(state.OpKeyState, func(e *state.Entry) { e.KeyState = &state.KeyStateArgs{All: true} }), true, []state.VersionState{a, a, a}},
		{"schedule version 1", entry(state.OpDeleteKey, func(e *state.Entry) { e.DeleteKey = &state.DeleteKeyArgs{Version: 1, At: at} }), true, []state.VersionState{p, a, a}},
		{"destroy before it is due", entry(state.OpDestroyKey, func(e *state.Entry) { e.Destroy = &state.DestroyKeyArgs{Version: 1, DeleteAt: at} }), false, []state.VersionState{p, a, a}},
		{"destroy with another time", entry(state.OpDestroyKey, func(e *state.Entry) {
			e.Time = at.Add(time.Hour)
			e.Destroy = &state.DestroyKeyArgs{Version: 1, DeleteAt: at.Add(time.Minute)}
		}), false, []state.VersionState{p, a, a}},
		{"destroy when due", entry(state.OpDestroyKey, func(e *state.Entry) {
			e.Time = at
			e.Destroy = &state.DestroyKeyArgs{Version: 1, DeleteAt: at}
		}), true, []state.VersionState{"", a, a}},
		{"destroy again", entry(state.OpDestroyKey, func(e *state.Entry) {
			e.Time = at
			e.Destroy = &state.DestroyKeyArgs{Version: 1, DeleteAt: at}
		}), false, []state.VersionState{"", a, a}},
		{"negative rotation", entry(state.OpKeyRotation, func(e *state.Entry) { e.Rotation = &state.RotationArgs{Every: -time.Hour} }), false, []state.VersionState{"", a, a}},
		{"rotation", entry(state.OpKeyRotation, func(e *state.Entry) { e.Rotation = &state.RotationArgs{Every: time.Hour} }), true, []state.VersionState{"", a, a}},
		{"delete all at once", entry(state.OpDeleteKey, func(e *state.Entry) { e.DeleteKey = &state.DeleteKeyArgs{All: true} }), true, nil},
	}
	for _, step := range steps {
		if err := apply(s, step.entry); (err == nil) != step.ok {
			t.Fatalf("%s: %v, want success %v", step.name, err, step.ok)
		}
		info, err := s.KeyInfo(state.DefaultEnclave, "k")
		if step.want == nil {
			if !errors.Is(err, state.ErrKeyNotFound) {
				t.Fatalf("%s: the key is still there: %v", step.name, err)
			}
			continue
		}
		got := map[uint32]state.VersionState{}
		for _, v := range info.Versions {
			got[v.Version] = v.State()
		}
		for i, want := range step.want {
			if got[uint32(i+1)] != want {
				t.Fatalf("%s: states %v, want %v", step.name, got, step.want)
			}
		}
		if step.name == "rotation" {
			var snap bytes.Buffer
			if err := s.Snapshot(&snap); err != nil {
				t.Fatal(err)
			}
			if err := s.Restore(&snap); err != nil {
				t.Fatal(err)
			}
			info, _ := s.KeyInfo(state.DefaultEnclave, "k")
			if info.RotateEvery != time.Hour || !info.NextRotation().Equal(t0.Add(time.Hour)) {
				t.Fatalf("rotation after a snapshot: every %s, next %s", info.RotateEvery, info.NextRotation())
			}
		}
	}
}

// TestDue lists what the leader must do: versions whose deletion time has
// come, keys whose active latest version is older than their period.
func TestDue(t *testing.T) {
	s := newState(t)
	t0 := time.Now().UTC()
	for _, name := range []string{"due", "disabled", "young"} {
		k, _ := crypto.GenerateKey(crypto.AES256, nil)
		sealed, _ := s.SealKey(state.DefaultEnclave, name, 1, k)
		mustApply(t, s, &state.Entry{Op: state.OpCreateKey, Time: t0, Enclave: state.DefaultEnclave, Name: name, Key: &state.KeyArgs{Type: crypto.AES256, Version: 1, Sealed: sealed, RotateEvery: time.Hour}})
	}
	mustApply(t, s, &state.Entry{Op: state.OpKeyState, Time: t0, Enclave: state.DefaultEnclave, Name: "disabled", KeyState: &state.KeyStateArgs{Disabled: true}})
	mustApply(t, s, &state.Entry{Op: state.OpKeyRotation, Time: t0, Enclave: state.DefaultEnclave, Name: "young", Rotation: &state.RotationArgs{Every: 3 * time.Hour}})
	mustApply(t, s, &state.Entry{Op: state.OpDeleteKey, Time: t0, Enclave: state.DefaultEnclave, Name: "young", DeleteKey: &state.DeleteKeyArgs{Version: 1, At: t0.Add(time.Minute)}})

	destroy, rotate := s.Due(t0.Add(2 * time.Hour))
	if len(destroy) != 1 || destroy[0].Name != "young" || !destroy[0].DeleteAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("destroy: %+v", destroy)
	}
	if len(rotate) != 1 || rotate[0].Name != "due" || rotate[0].Version != 1 {
		t.Errorf("rotate: %+v", rotate)
	}
	if destroy, rotate := s.Due(t0); len(destroy)+len(rotate) != 0 {
		t.Errorf("due at once: %+v %+v", destroy, rotate)
	}

	// Due visits only the keys that rotate or have a version pending
	// deletion: a state restored from a snapshot knows them too, and a
	// key that stops rotating or whose deletion is cancelled leaves them.
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if destroy, rotate := s.Due(t0.Add(2 * time.Hour)); len(destroy) != 1 || len(rotate) != 1 {
		t.Errorf("after a restore: destroy %+v, rotate %+v", destroy, rotate)
	}
	mustApply(t, s, &state.Entry{Op: state.OpKeyRotation, Time: t0, Enclave: state.DefaultEnclave, Name: "due", Rotation: &state.RotationArgs{}})
	mustApply(t, s, &state.Entry{Op: state.OpCancelDeleteKey, Time: t0, Enclave: state.DefaultEnclave, Name: "young", DeleteKey: &state.DeleteKeyArgs{Version: 1}})
	if destroy, rotate := s.Due(t0.Add(4 * time.Hour)); len(destroy) != 0 || len(rotate) != 1 || rotate[0].Name != "young" {
		t.Errorf("after rotation off and a cancel: destroy %+v, rotate %+v", destroy, rotate)
	}
}
