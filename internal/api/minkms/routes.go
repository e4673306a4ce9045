package minkms

import (
	"net/http"
	"time"

	"github.com/keep-kms/keep/internal/kesformat"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// MaxCommandBody bounds a /v1/kms request: a few MiB take batches of
// thousands of commands.
const MaxCommandBody = 4 << 20

// MaxBatchCommands bounds the commands of one /v1/kms request, and
// MaxBatchReply the bytes of its reply: a batch whose reply grows larger is
// refused with 413, so that no request makes Keep send much more than the
// largest request it accepts (amplification). The client batches identical
// reads only; ten thousand data keys, or a 4 MiB batch of encryptions, fit
// both bounds.
const (
	MaxBatchCommands = 10_000
	MaxBatchReply    = 2 * MaxCommandBody
)

// The access routes declare.
var (
	public   = service.Requirement{Access: service.Public}
	known    = service.Requirement{Access: service.Known}
	sysAdmin = service.Requirement{Access: service.SysAdmin}
	metrics  = service.Requirement{Access: service.Metrics}
)

// routes is the wire surface of the API, one endpoint per row.
var routes = []route{
	{method: http.MethodGet, path: "/version", auth: public, unlimited: true, maxBody: 0, timeout: 5 * time.Second, handle: (*API).version},
	{method: http.MethodGet, path: "/v1/health/live", auth: public, unlimited: true, maxBody: 0, timeout: 5 * time.Second, handle: (*API).live},
	{method: http.MethodGet, path: "/v1/health/ready", auth: public, unlimited: true, maxBody: 0, timeout: 5 * time.Second, handle: (*API).ready},
	{method: http.MethodGet, path: "/v1/health/status", auth: sysAdmin, unlimited: true, maxBody: 0, timeout: 5 * time.Second, handle: (*API).status},
	{method: http.MethodGet, path: "/v1/health/metrics", auth: metrics, unlimited: true, maxBody: 0, timeout: 10 * time.Second, handle: (*API).scrape},
	// The command routes set no timeout of their own: reads never block,
	// and writes are bounded by the cluster's apply timeout. A timer per
	// request would cost more than anything else in a generate.
	{method: http.MethodPost, path: "/v1/kms", auth: known, refusedAs: "/v1/kms", maxBody: MaxCommandBody, handle: (*API).command},
	{method: http.MethodPost, path: "/v1/kms/{enclave...}", auth: known, refusedAs: "/v1/kms", maxBody: MaxCommandBody, handle: (*API).command},
	// keep import-kes sends one key file of a KES keystore per request;
	// the service admits KEY:IMPORT on the key in the enclave.
	{method: http.MethodPut, path: "/v1/kes/import/{enclave}/{name}", auth: known, maxBody: kesformat.MaxKeyFileSize, timeout: 30 * time.Second, audit: state.RuleKeyImport, handle: (*API).importKES},
	// The lifecycle of a key (docs/key-lifecycle.md); the service admits
	// each action on the key (KEY:STATUS, KEY:DELETE or KEY:CREATE rules).
	{method: http.MethodGet, path: "/v1/keys/{enclave}/{name}", auth: known, maxBody: 0, timeout: 15 * time.Second, audit: "KEY:STATUS", handle: (*API).keyInfo},
	{method: http.MethodPut, path: "/v1/keys/{enclave}/{name}/{action}", auth: known, maxBody: maxKeyChange, timeout: 30 * time.Second, audit: "KEY:LIFECYCLE", handle: (*API).changeKey},
	{method: http.MethodPost, path: "/v1/debug/restart", auth: sysAdmin, maxBody: 0, timeout: 30 * time.Second, audit: "NODE:RESTART", handle: (*API).restart},
	{method: http.MethodGet + "," + http.MethodPut, path: "/v1/db", auth: sysAdmin, maxBody: MaxBackup, timeout: 10 * time.Minute, audit: "NODE:DB", handle: (*API).db},
	{method: http.MethodPost + "," + http.MethodGet + "," + http.MethodDelete, path: "/v1/debug/pprof", auth: sysAdmin, maxBody: 0, timeout: time.Minute, audit: "NODE:PPROF", handle: (*API).pprof},
	{method: http.MethodPost, path: "/v1/debug/log", auth: sysAdmin, maxBody: 64 << 10, timeout: 0, audit: "NODE:LOG", handle: (*API).log},
	{method: http.MethodGet + "," + http.MethodPut, path: "/v1/config", auth: sysAdmin, maxBody: 64 << 10, timeout: 30 * time.Second, audit: "NODE:CONFIG", auditOptional: true, handle: (*API).config},
}
