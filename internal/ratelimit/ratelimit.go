// Package ratelimit limits how many requests each identity may send: a
// token bucket per identity (golang.org/x/time/rate), as Vault and the
// cloud KMSs limit their callers. A Limiter without a limit costs one
// atomic load per request: no lookup, no lock.
package ratelimit

import (
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// ErrTooManyRequests is the error of a request over its identity's limit.
// The APIs answer it with 429 and a Retry-After header.
var ErrTooManyRequests = errors.New("too many requests: rate limit exceeded")

// maxBuckets bounds the buckets a Limiter holds. Only identities the
// service admitted get one (public routes are not limited: the route
// tables' tests hold them to that), so a cluster reaches it only with as
// many identities; then the buckets start over (full), which errs on the
// side of serving.
const maxBuckets = 1 << 16

// Limiter holds a token bucket per identity. The zero Limiter has no
// limit. It is safe for concurrent use.
type Limiter struct {
	limit atomic.Pointer[limit] // nil: no limit
}

// limit is one setting of a Limiter and the buckets made under it.
type limit struct {
	rate    rate.Limit
	burst   int
	buckets sync.Map // identity → *rate.Limiter
	n       atomic.Int64
}

// Set limits every identity to perSecond requests a second on average, in
// bursts of up to burst requests; perSecond 0 removes the limit, and burst
// 0 means perSecond (at least 1). Every bucket starts over, full.
func (l *Limiter) Set(perSecond float64, burst int) {
	if perSecond <= 0 || math.IsInf(perSecond, 0) || math.IsNaN(perSecond) {
		l.limit.Store(nil)
		return
	}
	if burst <= 0 {
		burst = int(max(1, math.Ceil(min(perSecond, math.MaxInt32))))
	}
	l.limit.Store(&limit{rate: rate.Limit(perSecond), burst: burst})
}

// Limited reports whether a limit is set.
func (l *Limiter) Limited() bool { return l.limit.Load() != nil }

// Allow takes a token from the bucket of identity id. When there is none
// it returns false and how long until there is one.
func (l *Limiter) Allow(id string) (retryAfter time.Duration, ok bool) {
	lim := l.limit.Load()
	if lim == nil {
		return 0, true
	}
	b := lim.bucket(id)
	now := time.Now()
	if b.AllowN(now, 1) {
		return 0, true
	}
	missing := 1 - b.TokensAt(now)
	return time.Duration(missing / float64(lim.rate) * float64(time.Second)), false
}

// bucket returns the bucket of id, made full on first use.
func (lim *limit) bucket(id string) *rate.Limiter {
	if b, ok := lim.buckets.Load(id); ok {
		return b.(*rate.Limiter)
	}
	if lim.n.Load() >= maxBuckets {
		lim.buckets.Clear()
		lim.n.Store(0)
	}
	b, loaded := lim.buckets.LoadOrStore(id, rate.NewLimiter(lim.rate, lim.burst))
	if !loaded {
		lim.n.Add(1)
	}
	return b.(*rate.Limiter)
}

// RetryAfter is the value of a Retry-After header for a wait of d: whole
// seconds, rounded up, at least 1.
func RetryAfter(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
