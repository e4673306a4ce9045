package usage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"
)

// Counted is the counter of a key version.
type Counted struct {
	ID
	Counter *Counter
}

// Reporter moves what a node's counters gathered into reports and has
// them proposed, one log entry each. A report whose write fails is sent
// again, unchanged, before anything new: the table applies each report
// once (by its reporter and sequence number), so a write that failed with
// an unknown outcome is neither lost nor counted twice. What the counters
// gather meanwhile waits for the next report.
//
// A Reporter is used by one goroutine.
type Reporter struct {
	id       string
	seq      uint64
	pending  []Report
	counters func() []Counted
	propose  func(context.Context, *Report) error
}

// NewReporter returns a reporter, named at random, of the counters that
// counters lists, whose reports propose writes to the log.
func NewReporter(counters func() []Counted, propose func(context.Context, *Report) error) *Reporter {
	return &Reporter{id: newReporterID(), counters: counters, propose: propose}
}

func newReporterID() string {
	b := make([]byte, 12)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Run reports every interval() until ctx is done. It looks at interval at
// least once a second, so that a change of the setting takes effect
// within a second, not after the interval it replaces. What the counters
// gathered since the last report of a node that stops is lost.
func (r *Reporter) Run(ctx context.Context, interval func() time.Duration) {
	last := time.Now()
	t := time.NewTimer(min(interval(), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		every := interval()
		if wait := every - time.Since(last); wait > 0 {
			t.Reset(min(wait, time.Second))
			continue
		}
		last = time.Now()
		if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
			slog.Warn("failed to report key usage; trying again", "err", err)
		}
		t.Reset(min(every, time.Second))
	}
}

// Flush proposes the reports whose writes failed before, or, if there are
// none, new reports of what the counters gathered (none if nothing was
// used).
func (r *Reporter) Flush(ctx context.Context) error {
	if len(r.pending) == 0 {
		r.pending = r.take()
	}
	for len(r.pending) > 0 {
		if err := r.propose(ctx, &r.pending[0]); err != nil {
			return err
		}
		r.pending = r.pending[1:]
	}
	return nil
}

// take moves the counts out of the counters into reports of at most
// MaxReportVersions versions each.
func (r *Reporter) take() []Report {
	var reports []Report
	for _, c := range r.counters() {
		v, used := c.Counter.take()
		if !used {
			continue
		}
		v.Enclave, v.Name, v.Version = c.Enclave, c.Name, c.Version
		if len(reports) == 0 || len(reports[len(reports)-1].Versions) == MaxReportVersions {
			r.seq++
			reports = append(reports, Report{Reporter: r.id, Seq: r.seq})
		}
		last := &reports[len(reports)-1]
		last.Versions = append(last.Versions, v)
	}
	return reports
}
