package usage

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestReporter reports through a table, with writes that fail: every count
// arrives once.
func TestReporter(t *testing.T) {
	const versions = MaxReportVersions + 10
	counted := make([]Counted, versions)
	for i := range counted {
		counted[i] = Counted{ID: ID{Enclave: "e", Name: fmt.Sprint("k", i), Version: 1}, Counter: NewCounter()}
	}
	tab := NewTable()
	var (
		proposed []Report
		fail     error
		applyToo bool // the failed write was applied all the same
	)
	r := NewReporter(func() []Counted { return counted }, func(_ context.Context, rep *Report) error {
		if err := rep.Validate(); err != nil {
			t.Fatal(err)
		}
		proposed = append(proposed, *rep)
		if fail == nil || applyToo {
			tab.Apply(rep, day0)
		}
		return fail
	})
	ctx := context.Background()

	if err := r.Flush(ctx); err != nil || len(proposed) != 0 {
		t.Fatalf("Flush of unused counters = %v, proposed %d reports; want none", err, len(proposed))
	}

	for _, c := range counted {
		c.Counter.Decrypted()
	}
	counted[0].Counter.Generated()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(proposed) != 2 || len(proposed[0].Versions) != MaxReportVersions || len(proposed[1].Versions) != 10 {
		t.Fatalf("proposed %d reports, want two split at %d versions", len(proposed), MaxReportVersions)
	}
	if proposed[0].Seq+1 != proposed[1].Seq {
		t.Errorf("sequence numbers %d, %d", proposed[0].Seq, proposed[1].Seq)
	}

	// A write with an unknown outcome, applied after all: the report is
	// sent again, unchanged, and counted once.
	counted[1].Counter.Decrypted()
	fail, applyToo = errors.New("leader lost"), true
	if err := r.Flush(ctx); err == nil {
		t.Fatal("Flush hid the failed write")
	}
	counted[1].Counter.Decrypted() // waits for the next report
	fail, applyToo = nil, false
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n := len(proposed)
	if proposed[n-1].Seq != proposed[n-2].Seq || len(proposed[n-1].Versions) != 1 || proposed[n-1].Versions[0].Decrypts != 1 {
		t.Errorf("the retry is %+v, want the failed report %+v again", proposed[n-1], proposed[n-2])
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u := tab.Usage(counted[1].ID, day0); u.Decrypts30d != 3 {
		t.Errorf("version 1 decrypted %d times, want 3", u.Decrypts30d)
	}
	if u := tab.Usage(counted[0].ID, day0); u.Decrypts30d != 1 || u.Generates30d != 1 || u.LastGenerate.IsZero() {
		t.Errorf("usage of version 0 = %+v", u)
	}
}

func TestReporterRun(t *testing.T) {
	c := NewCounter()
	reports := make(chan Report, 10)
	r := NewReporter(func() []Counted { return []Counted{{ID: v1, Counter: c}} }, func(_ context.Context, rep *Report) error {
		reports <- *rep
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, func() time.Duration { return 10 * time.Millisecond }); close(done) }()
	c.Decrypted()
	select {
	case rep := <-reports:
		if rep.Versions[0].Decrypts != 1 {
			t.Errorf("report %+v", rep)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no report within 10s")
	}
	cancel()
	<-done
}

// TestReporterIntervalChange shortens the interval while the reporter
// waits for a long one: the next report follows the new interval.
func TestReporterIntervalChange(t *testing.T) {
	c := NewCounter()
	reports := make(chan Report, 10)
	r := NewReporter(func() []Counted { return []Counted{{ID: v1, Counter: c}} }, func(_ context.Context, rep *Report) error {
		reports <- *rep
		return nil
	})
	var every atomic.Int64
	every.Store(int64(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, func() time.Duration { return time.Duration(every.Load()) })
	c.Decrypted()
	time.Sleep(100 * time.Millisecond)
	every.Store(int64(50 * time.Millisecond))
	select {
	case <-reports:
	case <-time.After(10 * time.Second):
		t.Fatal("no report within 10s of shortening the interval from an hour")
	}
}
