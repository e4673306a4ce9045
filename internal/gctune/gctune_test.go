package gctune

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		live uint64
		want int
	}{
		{"no collection yet", 0, 400},
		{"a small state", 8 * mib, 400},
		{"where the headroom meets the maximum", 64 * mib, 400},
		{"a mid-sized state", 128 * mib, 200},
		{"a million keys", 606 * mib, 42},
		{"past the minimum", 4096 * mib, 25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Default.Percent(tt.live); got != tt.want {
				t.Errorf("Percent(%d MiB) = %d, want %d", tt.live/mib, got, tt.want)
			}
		})
	}
}

// TestRunSetsTarget holds a 64 MiB live heap and checks that Run reads it
// from the runtime and sets the target its headroom allows.
func TestRunSetsTarget(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	live := make([]byte, 64<<20)
	for i := range live {
		live[i] = byte(i)
	}
	runtime.GC()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run sets the target once and returns
	Run(ctx, Policy{Max: 400, Min: 5, Headroom: 16 << 20}, 1)
	got := debug.SetGCPercent(100)
	runtime.KeepAlive(live)
	// 16 MiB above a live heap of 64 MiB and a little more.
	if got < 20 || got > 25 {
		t.Errorf("target %d%% with 64 MiB live and 16 MiB headroom, want 20-25%%", got)
	}
}
