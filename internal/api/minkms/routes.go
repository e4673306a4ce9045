package minkms

import (
	"net/http"
	"time"
)

// MaxCommandBody bounds a /v1/kms request: a few MiB take batches of
// thousands of commands.
const MaxCommandBody = 4 << 20

// routes is the wire surface of the API, one endpoint per row.
var routes = []route{
	{method: http.MethodGet, path: "/version", maxBody: 0, timeout: 5 * time.Second, handle: (*API).version},
	{method: http.MethodGet, path: "/v1/health/live", maxBody: 0, timeout: 5 * time.Second, handle: (*API).live},
	{method: http.MethodGet, path: "/v1/health/ready", maxBody: 0, timeout: 5 * time.Second, handle: (*API).ready},
	{method: http.MethodGet, path: "/v1/health/status", maxBody: 0, timeout: 5 * time.Second, handle: (*API).status},
	{method: http.MethodGet, path: "/v1/health/metrics", maxBody: 0, timeout: 10 * time.Second, handle: (*API).scrape},
	// The command routes set no timeout of their own: reads never block,
	// and writes are bounded by the cluster's apply timeout. A timer per
	// request would cost more than anything else in a generate.
	{method: http.MethodPost, path: "/v1/kms", maxBody: MaxCommandBody, handle: (*API).command},
	{method: http.MethodPost, path: "/v1/kms/{enclave...}", maxBody: MaxCommandBody, handle: (*API).command},
	{method: http.MethodPost, path: "/v1/debug/restart", maxBody: 0, timeout: 30 * time.Second, audit: "NODE:RESTART", handle: (*API).restart},
	{method: http.MethodGet + "," + http.MethodPut, path: "/v1/db", maxBody: MaxBackup, timeout: time.Minute, audit: "NODE:DB", handle: (*API).db},
	{method: http.MethodPost + "," + http.MethodGet + "," + http.MethodDelete, path: "/v1/debug/pprof", maxBody: 0, timeout: time.Minute, audit: "NODE:PPROF", handle: (*API).pprof},
	{method: http.MethodPost, path: "/v1/debug/log", maxBody: 64 << 10, timeout: 0, audit: "NODE:LOG", handle: (*API).log},
	{method: http.MethodGet + "," + http.MethodPut, path: "/v1/config", maxBody: 64 << 10, timeout: 30 * time.Second, audit: "NODE:CONFIG", auditOptional: true, handle: (*API).config},
}
