package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFill(t *testing.T) {
	vcs := []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123abcd"},
		{Key: "vcs.time", Value: "2026-12-06T22:57:28+01:00"},
	}
	tests := []struct {
		name                string
		version, commit     string // stamped
		date                string
		settings            []debug.BuildSetting
		wantVersion, wantCo string
		wantDate            string
	}{
		{name: "unstamped", settings: vcs,
			wantVersion: "2026-12-06T21-57-28Z", wantCo: "0123abcd", wantDate: "2026-12-06T21:57:28Z"},
		{name: "stamped wins", version: "v1.2.0", commit: "feedbeef", date: "2026-01-01T00:00:00Z", settings: vcs,
			wantVersion: "v1.2.0", wantCo: "feedbeef", wantDate: "2026-01-01T00:00:00Z"},
		{name: "no vcs", settings: []debug.BuildSetting{{Key: "-trimpath", Value: "true"}}},
		{name: "bad time", settings: []debug.BuildSetting{{Key: "vcs.time", Value: "yesterday"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func(v, c, d string) { Version, Commit, Date = v, c, d }(Version, Commit, Date)
			Version, Commit, Date = tc.version, tc.commit, tc.date
			fill(tc.settings)
			if Version != tc.wantVersion || Commit != tc.wantCo || Date != tc.wantDate {
				t.Errorf("got version %q commit %q date %q, want %q %q %q", Version, Commit, Date, tc.wantVersion, tc.wantCo, tc.wantDate)
			}
		})
	}
}
