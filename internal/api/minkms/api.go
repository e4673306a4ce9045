// Package minkms serves the MinIO KMS API (see the spec in shared/specs):
// /version, /v1/health/*, and the framed command API on /v1/kms. Handlers
// are thin: they decode the wire format, call the service, and encode the
// reply; the service decides who may do what.
package minkms

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/keep-kms/keep/internal/api/replystatus"
	"github.com/keep-kms/keep/internal/api/reqbody"
	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/cluster"
	authn "github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/logging"
	"github.com/keep-kms/keep/internal/profile"
	"github.com/keep-kms/keep/internal/ratelimit"

	"github.com/keep-kms/keep/internal/service"
)

// Node tells the health endpoints what this node can do.
type Node interface {
	Ready() bool                // can serve reads and crypto
	Writable() bool             // can serve writes
	Status() cluster.NodeStatus // this node's view of itself and its cluster
}

// Config is what the API of a node works with.
type Config struct {
	Service *service.Service
	Node    Node
	Host    string       // advertised host:port, reported by /version
	Audit   *audit.Log   // records every command
	Logs    *logging.Hub // the server log, streamed by /v1/debug/log
	// NodeConfig is this node's configuration as /v1/config shows it; it
	// must hold no secret.
	NodeConfig any
	// Effective returns the settings this node follows now.
	Effective func() map[string]string
	// Metrics encodes the node's metrics in the format the Accept header
	// asks for, for /v1/health/metrics.
	Metrics func(accept http.Header) (body []byte, contentType string, err error)
	// Limits is the per-identity rate limit; nil for none.
	Limits *ratelimit.Limiter
}

// API is the MinIO KMS API of one node.
type API struct {
	svc      *service.Service
	node     Node
	host     string
	audit    *audit.Log
	logs     *logging.Hub
	profiler profile.Profiler

	nodeConfig any
	effective  func() map[string]string
	metrics    func(http.Header) ([]byte, string, error)
	limits     *ratelimit.Limiter
}

// New returns the API of a node.
func New(c Config) *API {
	a := &API{
		svc: c.Service, node: c.Node, host: c.Host, audit: c.Audit, logs: c.Logs,
		nodeConfig: c.NodeConfig, effective: c.Effective,
		metrics: c.Metrics, limits: c.Limits,
	}
	if a.limits == nil {
		a.limits = new(ratelimit.Limiter)
	}
	return a
}

// route is one endpoint. Every limit of the wire surface, and who may
// call it, is in the table in routes.go.
type route struct {
	method string // one method, or several separated by commas
	path   string // a net/http ServeMux pattern, without method
	// auth is who may call the route. The router asks the service
	// (service.Admit) before the handler runs and before the body is read;
	// handlers never authorize by hand.
	auth service.Requirement
	// unlimited routes are exempt from the per-identity rate limit: the
	// health and metrics routes, which monitoring calls however busy the
	// node is.
	unlimited bool
	maxBody   int64 // bytes; larger bodies get 413
	timeout   time.Duration
	audit     string // the command name in audit records; "" for routes not audited here
	// refusedAs is the command name in the audit record of a refused
	// request on a route whose commands are audited one by one (/v1/kms).
	refusedAs string
	// auditOptional serves the route while the audit log is broken (its
	// record is written if it can be): the way out for an operator.
	auditOptional bool
	// handle serves the request of caller c, admitted to the route.
	handle func(a *API, w http.ResponseWriter, r *http.Request, c service.Caller)
}

// Register adds the API's routes to mux, and a JSON 404 for every other path.
func (a *API) Register(mux *http.ServeMux) {
	for _, rt := range routes {
		mux.Handle(rt.path, a.serve(rt))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reqbody.Unread(w, r)
		writeError(w, r, errNotFound)
	})
}

// serve wraps a route with its method check, authorization, rate limit,
// body limit and timeout. Nothing of the body is read before the caller
// is known to be allowed the route.
func (a *API) serve(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed(rt.method, r.Method) {
			reqbody.Unread(w, r)
			w.Header().Set("Allow", rt.method)
			writeError(w, r, errMethodNotAllowed)
			return
		}
		c := callerOf(r)
		if err := a.svc.Admit(c, rt.auth, r.PathValue("enclave"), ""); err != nil {
			reqbody.Unread(w, r)
			a.refused(w, r, rt, c, err)
			return
		}
		if !rt.unlimited {
			if wait, ok := a.limits.Allow(c.Identity); !ok {
				reqbody.Unread(w, r)
				w.Header().Set("Retry-After", ratelimit.RetryAfter(wait))
				writeError(w, r, ratelimit.ErrTooManyRequests)
				return
			}
		}
		if r.ContentLength > rt.maxBody {
			reqbody.Unread(w, r)
			writeError(w, r, errTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, rt.maxBody)
		if rt.timeout > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), rt.timeout)
			defer cancel()
			r = r.WithContext(ctx)
		}
		if rt.audit == "" {
			rt.handle(a, w, r, c)
			return
		}
		if err := a.audit.Ready(); err != nil && !rt.auditOptional {
			writeError(w, r, err)
			return
		}
		start, sw := time.Now(), replystatus.New(w)
		note := new(auditNote)
		r = r.WithContext(context.WithValue(r.Context(), auditNoteKey{}, note))
		rt.handle(a, sw, r, c)
		resource := note.resource
		if resource == "" {
			resource = strings.TrimSpace(r.Method + " " + r.URL.RawQuery)
		}
		a.audit.Record(audit.Event{
			Time: start.UTC(), Node: a.host, Identity: c.Identity, IP: remoteIP(r), API: "minkms",
			Command: rt.audit, Enclave: r.PathValue("enclave"), Resource: resource, Status: sw.Status, Latency: time.Since(start),
		})
	})
}

// auditNote is where the handler of an audited route may say what its
// request did, in place of the method and query its audit record names
// otherwise.
type auditNote struct{ resource string }

// auditNoteKey is the context key of a request's auditNote.
type auditNoteKey struct{}

// noteAudit sets the resource of r's audit record.
func noteAudit(r *http.Request, resource string) {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.resource = resource
	}
}

// refused answers a request the service did not admit. It is recorded, as
// every request that reaches the service, under the route's command; on
// the command API, whose commands are audited one by one but are in the
// unread body, as the route's refusedAs in the enclave it named. Routes
// not audited (health, metrics) are not recorded.
func (a *API) refused(w http.ResponseWriter, r *http.Request, rt route, c service.Caller, err error) {
	e := audit.Event{
		Time: time.Now().UTC(), Node: a.host, Identity: c.Identity, IP: remoteIP(r), API: "minkms",
		Command: rt.audit, Resource: strings.TrimSpace(r.Method + " " + r.URL.RawQuery),
	}
	if rt.refusedAs != "" {
		e.Command, e.Enclave, e.Resource = rt.refusedAs, r.PathValue("enclave"), ""
	}
	if e.Command != "" {
		e.Status, e.Error = statusOf(err)
		if rerr := a.audit.Record(e); rerr != nil && !rt.auditOptional {
			err = rerr
		}
	}
	writeError(w, r, err)
}

// readBody reads a request body whole into a buffer that grows with the
// bytes received (reqbody.Read). The route's limit is enforced by the
// http.MaxBytesReader serve puts around the body; MaxBackup, the largest
// limit of any route, is only a backstop.
func readBody(r *http.Request) ([]byte, error) {
	body, err := reqbody.Read(r.Body, r.ContentLength, MaxBackup)
	if errors.Is(err, reqbody.ErrTooLarge) {
		return nil, errTooLarge
	}
	if err != nil {
		return nil, errors.Join(errMalformed, err)
	}
	return body, nil
}

// remoteIP is the IP address of the client.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// callerOf is the client of a request, as the one authentication function (identity.Of) tells it.
func callerOf(r *http.Request) service.Caller {
	return service.Caller{Identity: authn.Of(r)}
}

// allowed reports whether method is one of the route's methods; HEAD is
// allowed where GET is.
func allowed(methods, method string) bool {
	for m := range strings.SplitSeq(methods, ",") {
		if m == method || (m == http.MethodGet && method == http.MethodHead) {
			return true
		}
	}
	return false
}
