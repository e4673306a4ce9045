package service

import (
	"context"
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
