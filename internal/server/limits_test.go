package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

func TestConfigLimits(t *testing.T) {
	tests := []struct {
		yaml  string
		rate  float64
		burst int
		err   string
	}{
		{"version: v1\n", 0, 0, ""},
		{"version: v1\nlimits:\n  rate: 1000\n  burst: 2000\n", 1000, 2000, ""},
		{"version: v1\nlimits:\n  rate: 0.5\n", 0.5, 0, ""},
		{"version: v1\nlimits:\n  rate: -1\n", 0, 0, "limits.rate"},
		{"version: v1\nlimits:\n  burst: -1\n", 0, 0, "limits.burst"},
		{"version: v1\nlimits:\n  rps: 5\n", 0, 0, "rps"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "keep.yaml")
		if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want one naming %s", tt.yaml, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		if rate, burst := c.limits(); rate != tt.rate || burst != tt.burst {
			t.Errorf("%q: limits %v, %d; want %v, %d", tt.yaml, rate, burst, tt.rate, tt.burst)
		}
	}
}

// TestSettingsLimits checks that the cluster settings override the config
// file's limits and that resetting them goes back to it.
func TestSettingsLimits(t *testing.T) {
	c := &Config{}
	c.Limits.Rate, c.Limits.Burst = 1, 1
	r := newRuntimeSettings(c, audit.New(nil, false), "127.0.0.1:7373", "h1:own")
	allowed := func() int {
		n := 0
		for range 10 {
			if _, ok := r.limits.Allow("h1:a"); ok {
				n++
			}
		}
		return n
	}
	if n := allowed(); n != 1 {
		t.Errorf("config file rate 1 burst 1: %d of 10 allowed", n)
	}
	r.apply(state.SettingsUpdate{Settings: map[string]string{service.SettingLimitsRate: "0"}})
	if n := allowed(); n != 10 {
		t.Errorf("limits.rate=0: %d of 10 allowed", n)
	}
	r.apply(state.SettingsUpdate{Settings: map[string]string{service.SettingLimitsRate: "100", service.SettingLimitsBurst: "3"}})
	if n := allowed(); n != 3 {
		t.Errorf("limits.rate=100 limits.burst=3: %d of 10 allowed", n)
	}
	r.apply(state.SettingsUpdate{})
	if n := allowed(); n != 1 {
		t.Errorf("settings reset, config file rate 1 burst 1: %d of 10 allowed", n)
	}
	if eff := r.Effective(); eff[service.SettingLimitsRate] != "1" || eff[service.SettingLimitsBurst] != "1" {
		t.Errorf("effective settings %v", eff)
	}
}
