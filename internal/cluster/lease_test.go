package cluster

import (
	"testing"
	"time"
)

func TestLease(t *testing.T) {
	const a, b = "leader-a:7373", "leader-b:7373"
	now := time.Now()
	type step struct {
		renew   string // leader of an echo; "" for none
		sent    time.Time
		applied uint64
		drop    string
	}
	for _, tc := range []struct {
		name      string
		steps     []step
		ask       string
		wantOK    bool
		wantFence uint64
	}{
		{"none", nil, a, false, 0},
		{"fresh lease brings the fence", []step{{renew: a, sent: now, applied: 7}}, a, true, 7},
		{"renewal keeps the fence", []step{{renew: a, sent: now, applied: 7}, {renew: a, sent: now, applied: 9}}, a, true, 7},
		{"lapsed lease starts afresh", []step{{renew: a, sent: now.Add(-time.Hour), applied: 7}, {renew: a, sent: now, applied: 9}}, a, true, 9},
		{"lease from another leader", []step{{renew: a, sent: now, applied: 7}}, b, false, 0},
		{"new leader starts afresh", []step{{renew: a, sent: now, applied: 7}, {renew: b, sent: now, applied: 3}}, b, true, 3},
		{"echo of an old report", []step{{renew: a, sent: now.Add(-reportTTL), applied: 7}}, a, false, 0},
		{"dropped", []step{{renew: a, sent: now, applied: 7}, {drop: a}}, a, false, 0},
		{"drop of another leader's stream", []step{{renew: a, sent: now, applied: 7}, {drop: b}}, a, true, 7},
	} {
		l := newLease()
		for _, s := range tc.steps {
			if s.renew != "" {
				l.renew(s.renew, s.sent, s.applied)
			}
			if s.drop != "" {
				l.drop(s.drop)
			}
		}
		fence, ok, _ := l.fenceFor(tc.ask)
		if ok != tc.wantOK || (ok && fence != tc.wantFence) {
			t.Errorf("%s: fenceFor = %d, %v; want %d, %v", tc.name, fence, ok, tc.wantFence, tc.wantOK)
		}
	}
}
