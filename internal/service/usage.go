package service

import (
	"context"
	"fmt"
	"time"

	"github.com/keep-kms/keep/internal/state"
	"github.com/keep-kms/keep/internal/usage"
)

// DefaultUsageReportInterval is how often a node reports the use of its
// key versions unless SettingUsageReportInterval says otherwise: one log
// entry a minute per node that served any key, at most.
const DefaultUsageReportInterval = time.Minute

// minUsageReportInterval keeps the reports from flooding the log.
const minUsageReportInterval = 100 * time.Millisecond

// ReportUsage writes a node's usage report to the log (a usage.Reporter's
// propose function). No identity asks for it, and it is not audited: it
// is the node's own bookkeeping, once a report interval.
func (s *Service) ReportUsage(ctx context.Context, r *usage.Report) error {
	return s.apply(ctx, Caller{}, &state.Entry{Op: state.OpUsageReport, Usage: r})
}

// checkUnused returns state.ErrKeyInUse if a version of a key that a
// deletion or disabling targets (one, 0: the latest, or all) decrypted
// anything in the last 30 days, summed over the nodes' reports; versions
// that unchanged says the change leaves as they are do not count. A key
// that does not exist is the write's to report.
func (s *Service) checkUnused(enclave, name string, version uint32, all bool, unchanged func(*state.KeyVersion) bool) error {
	info, err := s.state.KeyInfo(enclave, name)
	if err != nil || len(info.Versions) == 0 {
		return nil
	}
	if version == 0 {
		version = info.Versions[len(info.Versions)-1].Version
	}
	for i := range info.Versions {
		v, u := &info.Versions[i], info.Usage[i]
		if (!all && v.Version != version) || unchanged(v) || u.Decrypts30d == 0 {
			continue
		}
		return fmt.Errorf("%w: version %d of key %s decrypted %d times in the last %d days, last at %s; add --force",
			state.ErrKeyInUse, v.Version, name, u.Decrypts30d, usage.Window, u.LastDecrypt.UTC().Format(time.RFC3339))
	}
	return nil
}
