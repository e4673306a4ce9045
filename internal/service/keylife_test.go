package service

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/state"
)

// TestKeyLifecycle walks a key through its states: pending deletion and
// disabled versions serve nothing and say how to undo it; cancel and
// enable restore them; the leader destroys a due version exactly once and
// rotates a due key once per period.
func TestKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	s, root := newRootService(t)
	if err := s.CreateKey(ctx, root, "", "k", "", false); err != nil {
		t.Fatal(err)
	}
	_, dek, ct, err := s.GenerateKey(root, "", "k", 0, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	serves := func(when string, want error) {
		t.Helper()
		_, _, _, genErr := s.GenerateKey(root, "", "k", 0, nil, 0)
		plain, decErr := s.Decrypt(root, "", "k", 0, ct, nil)
		if want == nil {
			if genErr != nil || decErr != nil || !bytes.Equal(plain, dek) {
				t.Errorf("%s: generate %v, decrypt %v", when, genErr, decErr)
			}
			return
		}
		if !errors.Is(genErr, want) || !errors.Is(decErr, want) {
			t.Errorf("%s: generate %v, decrypt %v; want %v", when, genErr, decErr, want)
		}
	}

	week := 7 * 24 * time.Hour
	info, err := s.ScheduleKeyDeletion(ctx, root, "", "k", 0, false, nil, false)
	if err != nil || info.Versions[0].State() != state.StatePendingDeletion || time.Until(info.Versions[0].DeleteAt) < week-time.Minute {
		t.Fatalf("scheduled with the default window: %+v, %v", info, err)
	}
	serves("pending", state.ErrKeyPendingDeletion)
	if _, err := s.Decrypt(root, "", "k", 0, ct, nil); err == nil || !strings.Contains(err.Error(), "keep cancel-rm-key k -v 1") {
		t.Errorf("the error does not say how to cancel: %v", err)
	}
	if _, err := s.CancelKeyDeletion(ctx, root, "", "k", 0, false); err != nil {
		t.Fatal(err)
	}
	serves("cancelled", nil)

	if _, err := s.SetKeyDisabled(ctx, root, "", "k", 0, true, true, false); err != nil {
		t.Fatal(err)
	}
	serves("disabled", state.ErrKeyDisabled)
	if _, err := s.ScheduleKeyDeletion(ctx, root, "", "k", 1, false, &week, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CancelKeyDeletion(ctx, root, "", "k", 1, false); err != nil {
		t.Fatal(err)
	}
	serves("disabled, deletion cancelled", state.ErrKeyDisabled)
	if _, err := s.SetKeyDisabled(ctx, root, "", "k", 0, true, false, false); err != nil {
		t.Fatal(err)
	}
	serves("enabled", nil)

	// Rotation: due once a period has passed since the latest version.
	if _, err := s.SetKeyRotation(ctx, root, "", "k", time.Hour); err != nil {
		t.Fatal(err)
	}
	var events []LifecycleEvent
	report := func(ev LifecycleEvent) { events = append(events, ev) }
	later := time.Now().Add(2 * time.Hour)
	s.lifecycleOnce(ctx, time.Now(), report)
	s.lifecycleOnce(ctx, later, report)
	s.lifecycleOnce(ctx, later, report) // the new version is not due
	if len(events) != 1 || events[0].Command != CommandKeyRotate || events[0].Version != 2 || events[0].Err != nil {
		t.Fatalf("rotation: %+v", events)
	}
	serves("rotated", nil)

	// Destruction: due at DeleteAt, once.
	second := time.Second
	info, err = s.ScheduleKeyDeletion(ctx, root, "", "k", 1, false, &second, false)
	if err != nil {
		t.Fatal(err)
	}
	events = nil
	s.lifecycleOnce(ctx, time.Now(), report)
	due := info.Versions[0].DeleteAt
	s.lifecycleOnce(ctx, due, report)
	s.lifecycleOnce(ctx, due.Add(time.Second), report)
	if len(events) != 1 || events[0].Command != CommandKeyDestroy || events[0].Version != 1 || events[0].Err != nil {
		t.Fatalf("destruction: %+v", events)
	}
	if _, err := s.KeyStatus(root, "", "k", 1); !errors.Is(err, state.ErrKeyNotFound) {
		t.Errorf("version 1 after its destruction: %v", err)
	}
	if _, err := s.Decrypt(root, "", "k", 0, ct, nil); err == nil {
		t.Error("a ciphertext of the destroyed version decrypts")
	}

	// A window of 0 deletes at once, as before.
	zero := time.Duration(0)
	if _, err := s.ScheduleKeyDeletion(ctx, root, "", "k", 0, true, &zero, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KeyInfo(root, "", "k"); !errors.Is(err, state.ErrKeyNotFound) {
		t.Errorf("key after deletion with window 0: %v", err)
	}
}
