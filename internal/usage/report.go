package usage

import (
	"errors"
	"fmt"
	"time"
)

// MaxReportVersions bounds the versions of one report, and so the size of
// its log entry (a few hundred bytes a version); a reporter with more
// versions to report splits them over several reports.
const MaxReportVersions = 500

// maxReporterLen bounds a reporter's name.
const maxReporterLen = 64

// ErrInvalidReport refuses a report that no reporter makes.
var ErrInvalidReport = errors.New("invalid usage report")

// ID names a key version.
type ID struct {
	Enclave string
	Name    string
	Version uint32
}

// Report is what one node tells the cluster of the use of its key versions
// since its previous report.
type Report struct {
	// Reporter names the reporting process (random, new at every start)
	// and Seq numbers its reports from 1: a table applies each report
	// once, so that a report whose write failed with an unknown outcome
	// can be sent again.
	Reporter string          `json:"reporter"`
	Seq      uint64          `json:"seq"`
	Versions []VersionReport `json:"versions"`
}

// VersionReport is the use of one key version: how often it generated and
// decrypted since the previous report, and when it last did.
type VersionReport struct {
	Enclave      string    `json:"enclave"`
	Name         string    `json:"name"`
	Version      uint32    `json:"version"`
	Generates    uint64    `json:"generates,omitempty"`
	Decrypts     uint64    `json:"decrypts,omitempty"`
	LastGenerate time.Time `json:"last_generate,omitzero"`
	LastDecrypt  time.Time `json:"last_decrypt,omitzero"`
}

// ID returns the key version v reports on.
func (v *VersionReport) ID() ID { return ID{Enclave: v.Enclave, Name: v.Name, Version: v.Version} }

// Validate checks the shape of r: a reporter, a sequence number and
// between 1 and MaxReportVersions versions, each named. Whether the
// versions exist is the state's business.
func (r *Report) Validate() error {
	switch {
	case r.Reporter == "" || len(r.Reporter) > maxReporterLen:
		return fmt.Errorf("%w: reporter name must be 1 to %d bytes", ErrInvalidReport, maxReporterLen)
	case r.Seq == 0:
		return fmt.Errorf("%w: sequence numbers start at 1", ErrInvalidReport)
	case len(r.Versions) == 0 || len(r.Versions) > MaxReportVersions:
		return fmt.Errorf("%w: %d versions, not 1 to %d", ErrInvalidReport, len(r.Versions), MaxReportVersions)
	}
	for i := range r.Versions {
		v := &r.Versions[i]
		if v.Enclave == "" || v.Name == "" || v.Version == 0 {
			return fmt.Errorf("%w: version %d names no key version", ErrInvalidReport, i)
		}
	}
	return nil
}
