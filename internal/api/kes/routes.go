package kes

import (
	"net/http"
	"time"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// MaxBody bounds the body of the routes that take one: 1 MB, as KES.
const MaxBody = 1_000_000

// route is one endpoint of the KES API.
type route struct {
	method  string        // the method KES registers; POST is accepted where it is PUT
	path    string        // the ServeMux pattern; with a trailing slash the rest of the path is the resource
	maxBody int64         // bytes; 0: the body is not read
	timeout time.Duration // 0: none (log streams)

	// command is the MinIO KMS command the route maps to, as audit records
	// spell it; for routes that are no command, the path.
	command string
	// rule is the policy command whose rules grant the route to User
	// identities ("" when no policy can: then only the route's own check
	// applies, see the handler). It differs from command for KEY:MAC, which
	// no policy can name: KEY:GENERATE rules govern it (service.allows
	// must agree). KEY:IMPORT has rules of its own (state.RuleKeyImport).
	rule string

	// auth is who may call the route. The router asks the service
	// (service.Admit) before the handler runs and before the body is read;
	// handlers never authorize by hand.
	auth service.Requirement
	// unlimited routes are exempt from the per-identity rate limit: the
	// health and metrics routes, which monitoring calls however busy the
	// node is.
	unlimited bool

	metered bool   // counted and timed in the kes_http_* metrics: key, policy and identity routes
	failure string // the message of an unexpected (500) error
	shared  bool   // served by the MinIO KMS API on the same path; listed by /v1/api only
	handle  func(a *API, r *request) (any, error)
}

// Commands that cmds has no text for.
const (
	commandKeyImport = state.RuleKeyImport
	commandKeyMAC    = service.CommandKeyMAC
)

// The access routes declare.
var (
	public   = service.Requirement{Access: service.Public}
	known    = service.Requirement{Access: service.Known}
	sysAdmin = service.Requirement{Access: service.SysAdmin}
	member   = service.Requirement{Access: service.EnclaveMember}
)

// enclaveCommand is the access of a route that runs c in the KES enclave
// on the resource its path names.
func enclaveCommand(c cmds.Command) service.Requirement {
	return service.Requirement{Access: service.EnclaveCommand, Command: c}
}

// routes is the wire surface of the KES API, one endpoint per row (spec
// §2.4). docs/ARCHITECTURE.md has the same table for humans. It is set in
// init because handlers (policy rendering, /v1/api) read it.
var routes []route

func init() { routes = routeTable() }

func routeTable() []route {
	return []route{
		// /version is the MinIO KMS API's: its protojson reply carries the
		// "version" and "commit" the KES client reads.
		{method: http.MethodGet, path: "/version", timeout: 10 * time.Second, auth: public, shared: true},
		{method: http.MethodGet, path: "/v1/ready", timeout: 15 * time.Second, command: "/v1/ready", auth: member, unlimited: true, handle: (*API).ready},
		{method: http.MethodGet, path: "/v1/status", timeout: 15 * time.Second, command: "/v1/status", auth: member, unlimited: true, handle: (*API).status},
		{method: http.MethodGet, path: "/v1/metrics", timeout: 15 * time.Second, command: "/v1/metrics", auth: member, unlimited: true, handle: (*API).metricsReply},
		{method: http.MethodGet, path: "/v1/api", timeout: 10 * time.Second, command: "/v1/api", auth: member, handle: (*API).apis},

		{method: http.MethodPut, path: "/v1/key/create/", timeout: 15 * time.Second, command: cmds.KeyCreate.String(), rule: cmds.KeyCreate.String(), metered: true, failure: "failed to create key", auth: enclaveCommand(cmds.KeyCreate), handle: (*API).createKey},
		{method: http.MethodPut, path: "/v1/key/import/", maxBody: MaxBody, timeout: 15 * time.Second, command: commandKeyImport, rule: commandKeyImport, metered: true, failure: "failed to create key", auth: enclaveCommand(cmds.KeyImport), handle: (*API).importKey},
		{method: http.MethodGet, path: "/v1/key/describe/", timeout: 15 * time.Second, command: cmds.KeyStatus.String(), rule: cmds.KeyStatus.String(), metered: true, failure: "failed to read key", auth: enclaveCommand(cmds.KeyStatus), handle: (*API).describeKey},
		{method: http.MethodGet, path: "/v1/key/list/", timeout: 15 * time.Second, command: cmds.KeyList.String(), rule: cmds.KeyList.String(), metered: true, failure: "failed to list keys", auth: enclaveCommand(cmds.KeyList), handle: (*API).listKeys},
		{method: http.MethodDelete, path: "/v1/key/delete/", timeout: 15 * time.Second, command: cmds.KeyDelete.String(), rule: cmds.KeyDelete.String(), metered: true, failure: "failed to delete key", auth: enclaveCommand(cmds.KeyDelete), handle: (*API).deleteKey},
		{method: http.MethodPut, path: "/v1/key/generate/", maxBody: MaxBody, timeout: 15 * time.Second, command: cmds.KeyGenerate.String(), rule: cmds.KeyGenerate.String(), metered: true, failure: "failed to generate encryption key", auth: enclaveCommand(cmds.KeyGenerate), handle: (*API).generateKey},
		{method: http.MethodPut, path: "/v1/key/encrypt/", maxBody: MaxBody, timeout: 15 * time.Second, command: cmds.KeyEncrypt.String(), rule: cmds.KeyEncrypt.String(), metered: true, failure: "failed to encrypt plaintext", auth: enclaveCommand(cmds.KeyEncrypt), handle: (*API).encrypt},
		{method: http.MethodPut, path: "/v1/key/decrypt/", maxBody: MaxBody, timeout: 15 * time.Second, command: cmds.KeyDecrypt.String(), rule: cmds.KeyDecrypt.String(), metered: true, failure: "failed to decrypt ciphertext", auth: enclaveCommand(cmds.KeyDecrypt), handle: (*API).decrypt},
		{method: http.MethodPost, path: "/v1/key/bulk/decrypt/", maxBody: MaxBody, timeout: 15 * time.Second, command: cmds.KeyDecrypt.String(), rule: cmds.KeyDecrypt.String(), metered: true, failure: "failed to decrypt ciphertexts", auth: enclaveCommand(cmds.KeyDecrypt), handle: (*API).bulkDecrypt},
		{method: http.MethodPut, path: "/v1/key/hmac/", maxBody: MaxBody, timeout: 15 * time.Second, command: commandKeyMAC, rule: cmds.KeyGenerate.String(), metered: true, failure: "failed to compute HMAC", auth: enclaveCommand(service.KeyMAC), handle: (*API).hmac},

		{method: http.MethodGet, path: "/v1/policy/describe/", timeout: 15 * time.Second, command: cmds.PolicyStatus.String(), rule: cmds.PolicyStatus.String(), metered: true, failure: "failed to read policy", auth: enclaveCommand(cmds.PolicyStatus), handle: (*API).describePolicy},
		{method: http.MethodGet, path: "/v1/policy/read/", timeout: 15 * time.Second, command: cmds.PolicyGet.String(), rule: cmds.PolicyGet.String(), metered: true, failure: "failed to read policy", auth: enclaveCommand(cmds.PolicyGet), handle: (*API).readPolicy},
		{method: http.MethodGet, path: "/v1/policy/list/", timeout: 15 * time.Second, command: cmds.PolicyList.String(), rule: cmds.PolicyList.String(), metered: true, failure: "failed to list policies", auth: enclaveCommand(cmds.PolicyList), handle: (*API).listPolicies},

		{method: http.MethodGet, path: "/v1/identity/describe/", timeout: 15 * time.Second, command: cmds.IdentityGet.String(), rule: cmds.IdentityGet.String(), metered: true, failure: "failed to read identity", auth: enclaveCommand(cmds.IdentityGet), handle: (*API).describeIdentity},
		{method: http.MethodGet, path: "/v1/identity/list/", timeout: 15 * time.Second, command: cmds.IdentityList.String(), rule: cmds.IdentityList.String(), metered: true, failure: "failed to list identities", auth: enclaveCommand(cmds.IdentityList), handle: (*API).listIdentities},
		{method: http.MethodGet, path: "/v1/identity/self/describe", timeout: 15 * time.Second, command: cmds.IdentityGet.String(), metered: true, failure: "failed to read identity", auth: known, handle: (*API).describeSelf},

		{method: http.MethodGet, path: "/v1/log/error", command: "/v1/log/error", auth: sysAdmin, handle: (*API).errorLog},
		{method: http.MethodGet, path: "/v1/log/audit", command: "/v1/log/audit", auth: sysAdmin, handle: (*API).auditLog},
	}
}

// pathOf is the KES path of an audit event: the route of its command and
// its resource; for commands without a KES route (events of the MinIO KMS
// API), COMMAND or COMMAND/resource.
func pathOf(command, resource string) string {
	if command == "" || command[0] == '/' {
		return command
	}
	if command == cmds.IdentityGet.String() && resource == "" {
		return "/v1/identity/self/describe"
	}
	for i := range routes {
		rt := &routes[i]
		if rt.command == command && rt.path[len(rt.path)-1] == '/' {
			if rt.rule == cmds.IdentityGet.String() || rt.rule == cmds.IdentityList.String() {
				resource = identity.Hex(resource)
			}
			return rt.path + resource
		}
	}
	if resource == "" {
		return command
	}
	return command + "/" + resource
}
