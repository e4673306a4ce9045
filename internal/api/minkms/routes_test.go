package minkms

import (
	"testing"

	"github.com/keep-kms/keep/internal/service"
)

// TestRoutesDeclareAccess checks that every route says who may call it,
// as docs/ARCHITECTURE.md lists it, and that only health, metrics and
// public routes are exempt from the rate limit. A public route must be:
// the limiter keeps a bucket per identity and starts over when it holds
// too many, so buckets for any certificate a client makes up would let
// anyone give every identity its tokens back.
func TestRoutesDeclareAccess(t *testing.T) {
	want := map[string]service.Access{
		"/version":                           service.Public,
		"/v1/health/live":                    service.Public,
		"/v1/health/ready":                   service.Public,
		"/v1/health/status":                  service.SysAdmin,
		"/v1/health/metrics":                 service.Metrics,
		"/v1/kms":                            service.Known,
		"/v1/kms/{enclave...}":               service.Known,
		"/v1/kes/import/{enclave}/{name}":    service.Known,
		"/v1/keys/{enclave}/{name}":          service.Known,
		"/v1/keys/{enclave}/{name}/{action}": service.Known,
		"/v1/debug/restart":                  service.SysAdmin,
		"/v1/db":                             service.SysAdmin,
		"/v1/debug/pprof":                    service.SysAdmin,
		"/v1/debug/log":                      service.SysAdmin,
		"/v1/config":                         service.SysAdmin,
	}
	if len(routes) != len(want) {
		t.Errorf("%d routes, %d expected: update this test and the docs", len(routes), len(want))
	}
	for _, rt := range routes {
		if got, ok := want[rt.path]; !ok || got != rt.auth.Access {
			t.Errorf("%s declares access %d, want %d", rt.path, rt.auth.Access, got)
		}
		health := rt.path == "/v1/health/live" || rt.path == "/v1/health/ready" || rt.path == "/v1/health/status" || rt.path == "/v1/health/metrics"
		if rt.unlimited != (health || rt.auth.Access == service.Public) {
			t.Errorf("%s: exempt from the rate limit = %v", rt.path, rt.unlimited)
		}
	}
}
