// Package buildinfo tells which build of Keep is running: the values that
// deploy/build.sh stamps with -ldflags -X, or, in a plain `go build`, what
// the Go toolchain recorded from the VCS. `keep version`, the start-up
// banner, the metrics and the /version endpoints of both APIs read them
// here, so that they always agree.
package buildinfo

import (
	"crypto/fips140"
	"runtime"
	"runtime/debug"
	"time"
)

// License is the SPDX identifier of Keep's licence (LICENSE at the
// repository root). It links the AGPLv3 kms-go libraries, so its own terms
// are the AGPL too; docs/licenses.md lists every linked module's licence.
const License = "AGPL-3.0-or-later"

// Version is the release of this binary. deploy/build.sh sets it with
// -ldflags "-X github.com/keep-kms/keep/internal/buildinfo.Version=…" (a
// tag, or the commit time in the form yyyy-mm-ddThh-mm-ssZ that MinIO
// KMS releases use); otherwise it is the VCS commit time in that form, or
// "dev".
var Version = ""

// Commit is the VCS revision of this binary, if known: stamped by
// deploy/build.sh, or vcs.revision from the Go build info.
var Commit = ""

// Date is when this binary's source was committed, in RFC 3339 UTC:
// stamped by deploy/build.sh (SOURCE_DATE_EPOCH, or the commit time, so
// that builds of one commit are identical), or vcs.time from the Go build
// info; empty if unknown. It is not the wall clock of the build, which
// would make every build differ.
var Date = ""

// versionLayout is the form of MinIO KMS release names, which the MinIO
// KMS API's /version answers in its version field.
const versionLayout = "2006-01-02T15-04-05Z"

func init() {
	info, ok := debug.ReadBuildInfo()
	if ok {
		fill(info.Settings)
	}
	if Version == "" {
		Version = "dev"
	}
}

// fill sets what -ldflags did not from the build settings vcs.revision and
// vcs.time.
func fill(settings []debug.BuildSetting) {
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			if Commit == "" {
				Commit = s.Value
			}
		case "vcs.time":
			t, err := time.Parse(time.RFC3339, s.Value)
			if err != nil {
				continue
			}
			if Version == "" {
				Version = t.UTC().Format(versionLayout)
			}
			if Date == "" {
				Date = t.UTC().Format(time.RFC3339)
			}
		}
	}
}

// GoVersion is the Go release that built this binary.
func GoVersion() string { return runtime.Version() }

// FIPS140 reports whether the binary runs in Go's FIPS 140-3 mode
// (GODEBUG=fips140=on or only, or a binary built with GOFIPS140): its
// cryptography then comes from the Go Cryptographic Module, and crypto/tls
// allows only FIPS-approved protocol versions, cipher suites, curves and
// signature algorithms.
func FIPS140() bool { return fips140.Enabled() }
