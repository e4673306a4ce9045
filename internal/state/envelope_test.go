package state

import (
	"bytes"
	"errors"
	"testing"
)

// TestRestoreRefuses checks what a restore refuses: every byte of a
// snapshot flipped, a snapshot cut short, a backup, and that it takes the
// genuine snapshot, an empty one and, with legacy, format 1.
func TestRestoreRefuses(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	snap := snapshotOf(t, s, snapshotEnvelope)
	check := func(data []byte, legacy bool) error {
		return New(h).restore(bytes.NewReader(data), snapshotEnvelope, legacy)
	}
	for off := range snap {
		bad := bytes.Clone(snap)
		bad[off] ^= 0x80
		if err := check(bad, true); err == nil {
			t.Fatalf("a snapshot with byte %d flipped passes", off)
		}
	}
	env, _, err := parseEnvelope(snap, snapshotEnvelope)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		data   []byte
		legacy bool
		want   error // nil: it passes
	}{
		{"genuine", snap, false, nil},
		{"empty", snapshotOf(t, New(h), snapshotEnvelope), false, nil},
		{"legacy", []byte(`{"format":1}`), true, nil},
		{"legacy outside an upgrade", []byte(`{"format":1}`), false, ErrNotAuthentic},
		{"backup", snapshotOf(t, s, backupEnvelope), false, ErrNotAuthentic},
		{"no body", snap[:len(env.signed)+macSize], false, ErrNotAuthentic},
		{"short header", snap[:len(env.signed)+macSize-1], false, ErrNotAuthentic},
		{"short body", snap[:len(snap)-1], false, ErrNotAuthentic},
		{"longer body", append(bytes.Clone(snap), ' '), false, ErrNotAuthentic},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := check(c.data, c.legacy); c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}
