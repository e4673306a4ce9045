// Package buildinfo tells which build of Keep is running.
package buildinfo

import (
	"runtime/debug"
	"time"
)

// Version is the release of this binary, a UTC timestamp in the form
// yyyy-mm-ddThh-mm-ssZ as the MinIO KMS API expects. Release builds set it
// with -ldflags "-X github.com/keep-kms/keep/internal/buildinfo.Version=…";
// otherwise it is the VCS commit time, or "dev".
var Version = ""

// Commit is the VCS revision of this binary, if known.
var Commit = ""

func init() {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if Commit == "" {
				Commit = s.Value
			}
		case "vcs.time":
			if Version == "" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					Version = t.UTC().Format("2006-01-02T15-04-05Z")
				}
			}
		}
	}
	if Version == "" {
		Version = "dev"
	}
}
