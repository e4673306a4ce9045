// Package kes serves the KES API (shared/specs/kes-api.md) on the same mux
// and port as the MinIO KMS API, so that KES clients (MinIO in KES mode,
// the kes CLI, github.com/minio/kms-go/kes) work with Keep unmodified.
//
// Handlers are thin, as in package minkms: a route table (routes.go) holds
// every limit of the wire surface; handlers decode the KES JSON, call the
// service on the configured enclave, and encode the reply; one table
// (errors.go) maps errors to KES status codes and messages. The service
// decides who may do what: KES identities are the MinIO KMS identities in
// another spelling (hex instead of h1:), and each route maps to the MinIO
// KMS policy command that governs it.
package kes

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/api/replystatus"
	"github.com/keep-kms/keep/internal/api/reqbody"
	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/logging"
	"github.com/keep-kms/keep/internal/ratelimit"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// Node tells the API whether this node can serve.
type Node interface {
	Ready() bool // the state is initialized: reads and crypto can be served
}

// Config is what the KES API of a node works with.
type Config struct {
	Service *service.Service
	Node    Node
	Host    string             // advertised host:port, recorded in audit events
	Enclave string             // the enclave every KES call acts on; "" = default
	Audit   *audit.Log         // records every request that reaches the service; streamed by /v1/log/audit
	Logs    *logging.Hub       // the server log, streamed by /v1/log/error
	Limits  *ratelimit.Limiter // the per-identity rate limit; nil for none
}

// API is the KES API of one node.
type API struct {
	svc     *service.Service
	node    Node
	host    string
	enclave string
	audit   *audit.Log
	logs    *logging.Hub
	metrics *metrics
	limits  *ratelimit.Limiter
	started time.Time

	closeOnce sync.Once
	done      chan struct{} // closed by Close: log streams end
}

// New returns the KES API of a node.
func New(c Config) *API {
	enclave := c.Enclave
	if enclave == "" {
		enclave = state.DefaultEnclave
	}
	limits := c.Limits
	if limits == nil {
		limits = new(ratelimit.Limiter)
	}
	now := time.Now()
	return &API{
		svc: c.Service, node: c.Node, host: c.Host, enclave: enclave,
		audit: c.Audit, logs: c.Logs, metrics: newMetrics(now), limits: limits, started: now,
		done: make(chan struct{}),
	}
}

// Register adds the API's routes to mux. Resource routes are ServeMux
// subtree patterns ("/v1/key/create/"); a request for the bare prefix
// ("/v1/key/list", what the client sends to list with an empty prefix) is
// redirected to it with 301, as KES's mux did (Go's ServeMux answers 307
// since Go 1.22; the client follows either for a GET). Routes the MinIO
// KMS API serves on the same path (/version) are not registered again.
// Every other path falls through to the mux's catch-all 404.
func (a *API) Register(mux *http.ServeMux) {
	for i := range routes {
		rt := &routes[i]
		if rt.shared {
			continue
		}
		mux.Handle(rt.path, a.serve(rt))
		if bare, ok := strings.CutSuffix(rt.path, "/"); ok {
			mux.Handle(bare, redirect(rt.path))
		}
	}
}

// redirect answers with a permanent redirect to path, keeping the query.
func redirect(path string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := path
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, u, http.StatusMovedPermanently) // #nosec G710 -- the target is the route's own path on this host; only the query is the client's
	})
}

// Close ends the log streams; the server calls it when it shuts down, so
// that open streams do not hold up the shutdown.
func (a *API) Close() {
	a.closeOnce.Do(func() { close(a.done) })
}

// request is one KES request as handlers see it.
type request struct {
	*http.Request
	route    *route
	caller   service.Caller
	resource string // the rest of the path after the route's prefix: a name or a list prefix
	audited  string // the resource as the audit record names it; resource unless a handler says otherwise
	start    time.Time
}

// stream is a reply that a handler writes itself, after the request has
// been authorized and recorded: a log stream.
type stream func(w http.ResponseWriter, r *request)

// raw is a reply that is not JSON: the metrics.
type raw struct {
	contentType string
	body        []byte
}

// serve wraps a route with the KES request pipeline (spec §2.1): method
// check (POST is accepted where PUT is registered), timeout, body limit,
// identification, authorization as the route declares it (before any body
// byte is read), the handler, the audit record, and the reply.
func (a *API) serve(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		start := time.Now()
		if rt.metered {
			sw := replystatus.New(w)
			w = sw
			a.metrics.active.Inc()
			defer func() {
				a.metrics.active.Dec()
				a.metrics.observe(sw.Status, time.Since(start))
			}()
		}
		r := &request{Request: hr, route: rt, start: start}
		if hr.Method != rt.method && (hr.Method != http.MethodPost || rt.method != http.MethodPut) {
			reqbody.Unread(w, hr)
			w.Header().Set("Accept", rt.method) // where KES puts the expected method
			w.Header().Set("Allow", allowHeader(rt.method))
			a.fail(w, r, errMethod(hr.Method, rt.method))
			return
		}
		if rt.timeout > 0 {
			ctx, cancel := context.WithTimeout(hr.Context(), rt.timeout)
			defer cancel()
			r.Request = hr.WithContext(ctx)
		}
		r.resource = strings.TrimPrefix(r.URL.Path, rt.path)
		r.audited = r.resource
		if rt.maxBody > 0 {
			r.Body = http.MaxBytesReader(w, r.Body, rt.maxBody)
		}
		var err error
		if r.caller, err = identify(r.Request); err != nil {
			reqbody.Unread(w, hr)
			a.fail(w, r, err)
			return
		}
		if err := a.audit.Ready(); err != nil {
			reqbody.Unread(w, hr)
			a.fail(w, r, err)
			return
		}
		if err := a.admit(r); err != nil {
			// The service refused the caller: recorded, as every request
			// that reaches the service, and refused before the body is read.
			if rerr := a.record(r, err); rerr != nil {
				err = rerr
			}
			reqbody.Unread(w, hr)
			a.fail(w, r, err)
			return
		}
		if !rt.unlimited {
			if wait, ok := a.limits.Allow(r.caller.Identity); !ok {
				reqbody.Unread(w, hr)
				w.Header().Set("Retry-After", ratelimit.RetryAfter(wait))
				a.fail(w, r, ratelimit.ErrTooManyRequests)
				return
			}
		}

		reply, err := rt.handle(a, r)
		// The record is written before the reply, and a request whose
		// record cannot be written fails. Requests refused as malformed
		// before they reached the service are not recorded.
		var invalid *requestError
		if !errors.As(err, &invalid) {
			if rerr := a.record(r, err); rerr != nil {
				err = rerr
			}
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		switch v := reply.(type) {
		case stream:
			v(w, r)
		case raw:
			writeBody(w, http.StatusOK, v.contentType, v.body)
		case nil:
			writeBody(w, http.StatusOK, "", nil)
		default:
			writeJSON(w, v)
		}
	})
}

// admit asks the service whether the caller may call the route (the
// route table declares who may), on the resource its path names.
func (a *API) admit(r *request) error {
	if r.route.auth.Command == cmds.IdentityGet {
		r.audited = identityOf(r.resource)
	}
	return a.svc.Admit(r.caller, r.route.auth, a.enclave, r.audited)
}

// record writes the audit event of a request that reached the service.
func (a *API) record(r *request, err error) error {
	e := audit.Event{
		Time:     r.start.UTC(),
		Node:     a.host,
		Identity: r.caller.Identity,
		IP:       remoteIP(r.Request),
		API:      "kes",
		Command:  r.route.command,
		Enclave:  a.enclave,
		Resource: r.audited,
		Status:   http.StatusOK,
		Latency:  time.Since(r.start),
	}
	if err != nil {
		e.Status, e.Error = statusOf(r.route, err)
	}
	return a.audit.Record(e)
}

// fail sends err. Access denials are logged at debug level and server
// failures at error level, with the request as KES logs it; both reach the
// /v1/log/error stream when the server log level lets them through.
func (a *API) fail(w http.ResponseWriter, r *request, err error) {
	status, msg := statusOf(r.route, err)
	switch {
	case status >= http.StatusInternalServerError:
		slog.Error("request failed", append(r.logAttrs(), "err", err)...)
	case status == http.StatusForbidden:
		slog.Debug("access denied: "+msg, r.logAttrs()...) // #nosec G706 -- msg comes from the error table; slog quotes attribute values
	}
	writeError(w, status, msg)
}

// logAttrs describe a request in the server log, as KES names them.
func (r *request) logAttrs() []any {
	return []any{
		"req.method", r.Method,
		"req.path", r.URL.Path,
		"req.ip", remoteIP(r.Request),
		"req.identity", identity.Hex(r.caller.Identity),
	}
}

// readBody reads a request body whole, within the route's limit, into a
// buffer that grows with the bytes received (reqbody.Read). It reads
// bodies of unknown length (chunked, or HTTP/2 without Content-Length) as
// well: the KES client sends every body that way (spec §2.8).
func readBody(r *request, bad *requestError) ([]byte, error) {
	body, err := reqbody.Read(r.Body, r.ContentLength, r.route.maxBody)
	if err != nil {
		return nil, bad
	}
	return body, nil
}

// identify returns the caller of a request, as identity.Of tells it: the
// public key of the certificate the client proved it holds. Certificates
// it sent along are ignored, whatever they are marked as (KES skipped CA
// certificates and took another one, which let a client that sent its own
// CA and a certificate of someone else's public key act as that someone).
func identify(r *http.Request) (service.Caller, error) {
	if r.TLS == nil {
		return service.Caller{}, errInsecure
	}
	id := identity.Of(r)
	if id == "" {
		return service.Caller{}, errNoCert
	}
	return service.Caller{Identity: id}, nil
}

// remoteIP is the IP address of the client.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// allowHeader is the Allow header of a 405: POST is allowed where PUT is.
func allowHeader(method string) string {
	if method == http.MethodPut {
		return "PUT, POST"
	}
	return method
}
