package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	tests := []struct {
		name      string
		perSecond float64
		burst     int
		requests  int // sent at once by one identity
		allowed   int
	}{
		{"no limit", 0, 0, 1000, 1000},
		{"negative rate is no limit", -1, 5, 100, 100},
		{"burst", 10, 5, 20, 5},
		{"burst defaults to rate", 3, 0, 10, 3},
		{"fractional rate bursts one", 0.5, 0, 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l Limiter
			l.Set(tt.perSecond, tt.burst)
			if l.Limited() != (tt.perSecond > 0) {
				t.Errorf("Limited() = %v", l.Limited())
			}
			allowed := 0
			for range tt.requests {
				retry, ok := l.Allow("h1:a")
				if ok {
					allowed++
					continue
				}
				if retry <= 0 || retry > time.Duration(float64(time.Second)/tt.perSecond)+time.Millisecond {
					t.Errorf("retry after %v at %v/s", retry, tt.perSecond)
				}
			}
			if allowed != tt.allowed {
				t.Errorf("%d of %d allowed, want %d", allowed, tt.requests, tt.allowed)
			}
			// Another identity has its own bucket.
			if tt.perSecond > 0 {
				if _, ok := l.Allow("h1:b"); !ok {
					t.Error("a second identity was limited by the first one's requests")
				}
			}
		})
	}
}

func TestLimiterRecovers(t *testing.T) {
	var l Limiter
	l.Set(50, 1)
	if _, ok := l.Allow("h1:a"); !ok {
		t.Fatal("first request limited")
	}
	retry, ok := l.Allow("h1:a")
	if ok {
		t.Fatal("second request at once allowed with burst 1")
	}
	time.Sleep(retry + 5*time.Millisecond)
	if _, ok := l.Allow("h1:a"); !ok {
		t.Fatalf("still limited after waiting the %v it said", retry)
	}
	// Removing the limit serves everyone again; setting one starts full.
	l.Set(0, 0)
	for range 100 {
		if _, ok := l.Allow("h1:a"); !ok {
			t.Fatal("limited without a limit")
		}
	}
}

func TestLimiterBounded(t *testing.T) {
	var l Limiter
	l.Set(1, 1)
	for i := range maxBuckets + 10 {
		l.Allow(string(rune(i)) + "id")
	}
	if n := l.limit.Load().n.Load(); n > maxBuckets {
		t.Errorf("%d buckets, at most %d", n, maxBuckets)
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{{0, "1"}, {time.Millisecond, "1"}, {time.Second, "1"}, {1500 * time.Millisecond, "2"}, {90 * time.Second, "90"}} {
		if got := RetryAfter(tt.d); got != tt.want {
			t.Errorf("RetryAfter(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// BenchmarkAllowUnlimited is the cost of the limit check on the hot path
// when no limit is set.
func BenchmarkAllowUnlimited(b *testing.B) {
	var l Limiter
	for b.Loop() {
		l.Allow("h1:a")
	}
}

// TestLimiterConcurrent: many requests of one identity at once take no
// more tokens than the burst (run it with -race).
func TestLimiterConcurrent(t *testing.T) {
	var l Limiter
	l.Set(0.001, 50)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if _, ok := l.Allow("h1:a"); ok {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 50 {
		t.Errorf("%d of 800 allowed with burst 50", n)
	}
}
