package state

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

// TestCheckSnapshot checks what CheckSnapshot refuses: every byte of a
// snapshot flipped, a snapshot cut short, a backup, and accepts the
// genuine snapshot, an empty one and, with legacy, format 1.
func TestCheckSnapshot(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	snap := snapshotOf(t, s, snapshotEnvelope)
	check := func(data []byte, legacy bool) error { return CheckSnapshot(h, bytes.NewReader(data), legacy) }
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

// TestCheckSnapshotStreams checks a snapshot of 64 MB without holding it:
// a node checks its newest snapshot as it starts, hundreds of MB at a
// million keys.
func TestCheckSnapshotStreams(t *testing.T) {
	h := testHSM(t)
	s, _ := populated(t, h)
	snap := snapshotOf(t, s, snapshotEnvelope)
	const size = 64 << 20
	r := io.MultiReader(bytes.NewReader(snap), io.LimitReader(zeros{}, size))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := CheckSnapshot(h, r, false)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrNotAuthentic) {
		t.Fatalf("a snapshot with 64 MB appended: %v, want %v", err, ErrNotAuthentic)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	if allocated > size/8 {
		t.Fatalf("checking a snapshot of %d bytes allocated %d", size, allocated)
	}
	t.Logf("checking a snapshot of %d bytes allocated %d", size, allocated)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
