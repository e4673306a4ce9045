package attack

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"

	"github.com/keep-kms/keep/test/testnode"
)

// forgedOrders are the chains an attacker sends, first certificate first.
// Only the first certificate's key is proved by the handshake; the ones
// that lead with the victim's key fail the handshake, the others must
// make the attacker itself (unknown to Keep) the caller.
var forgedOrders = [][]string{
	{"own CA", "victim-key cert"},
	{"victim-key cert", "own CA"},
	{"own CA", "victim-key cert", "own CA 2"},
	{"own CA", "own CA 2", "victim-key cert"},
	{"own leaf", "victim-key CA"},
	{"victim-key CA", "own leaf"},
}

// forgedAttempt is one request an impersonator tries on an API.
type forgedAttempt struct {
	api, method, path string
	body              func(t *testing.T, i int) []byte
}

// forgedAttempts are requests on every API that would do harm, or reveal
// something, if the attacker were taken for the victim. %d is replaced by
// a number unique per try, so that a success leaves a trace.
var forgedAttempts = []forgedAttempt{
	{"minkms", http.MethodPost, "/v1/kms/default", func(t *testing.T, i int) []byte {
		return kmsFrames(t, cmds.KeyCreate, &pb.CreateKeyRequest{Name: fmt.Sprintf("forged-%d", i)})
	}},
	{"minkms", http.MethodPost, "/v1/kms", func(t *testing.T, i int) []byte {
		return kmsFrames(t, cmds.EnclaveCreate, &pb.CreateEnclaveRequest{Name: fmt.Sprintf("forged-%d", i)})
	}},
	{"minkms", http.MethodPost, "/v1/kms/default", func(t *testing.T, i int) []byte {
		return kmsFrames(t, cmds.KeyGenerate, &pb.GenerateKeyRequest{Name: "minio-key"})
	}},
	{"kes", http.MethodPut, "/v1/key/create/forged-%d", nil},
	{"kes", http.MethodPost, "/v1/key/generate/minio-key", func(*testing.T, int) []byte { return []byte("{}") }},
	{"kes", http.MethodGet, "/v1/key/describe/minio-key", nil},
	{"kes", http.MethodGet, "/v1/key/list/*", nil},
	{"kes", http.MethodGet, "/v1/identity/self/describe", nil},
	{"kes", http.MethodGet, "/v1/status", nil},
	{"kes", http.MethodGet, "/v1/log/audit", nil},
	{"management", http.MethodGet, "/v1/config", nil},
	{"management", http.MethodGet, "/v1/db", nil},
	{"management", http.MethodGet, "/v1/health/status", nil},
	{"management", http.MethodGet, "/v1/health/metrics", nil},
	{"management", http.MethodGet, "/v1/debug/pprof", nil},
	{"management", http.MethodPost, "/v1/debug/log", func(*testing.T, int) []byte { return nil }},
}

// TestForgedChains: a client that holds only its own key and knows the
// public key of a victim (the root identity, or a registered SysAdmin)
// sends certificate chains that carry the victim's key, in every order,
// on every API. It must never act as the victim: every request either
// fails the handshake or is refused as the attacker's own (unknown)
// identity, and nothing it asked for exists afterwards.
//
// On the code before the fix the KES API took [own CA, victim-key cert]
// (and the variants with extra CAs) for the victim: keys were created and
// data keys generated as root.
func TestForgedChains(t *testing.T) {
	tn := startAuthnTenants(t, "")
	n := tn.n
	victims := []struct {
		name string
		pub  crypto.PublicKey
		id   mtls.Identity
	}{
		{"root", n.Root.Public(), n.Root.Identity()},
		{"registered SysAdmin", tn.sysAdmin.Public(), tn.sysAdmin.Identity()},
	}
	try := 0
	for _, v := range victims {
		for _, order := range forgedOrders {
			for _, h2 := range []bool{true, false} {
				name := fmt.Sprintf("%s/%s/h2=%v", v.name, strings.Join(order, ","), h2)
				t.Run(name, func(t *testing.T) {
					attacker := testnode.NewAPIKey(t)
					cert := forgedCert(t, attacker, v.pub, order)
					hc := authnClient(t, &cert, h2, 5*time.Second)
					for _, a := range forgedAttempts {
						try++
						path := a.path
						if strings.Contains(path, "%d") {
							path = fmt.Sprintf(path, try)
						}
						var body []byte
						if a.body != nil {
							body = a.body(t, try)
						}
						r := authnSend(hc, a.method, n.Endpoint()+path, body, 1<<20)
						if r.err != nil {
							continue // the handshake failed: the attacker proved no key of the victim
						}
						if r.status != http.StatusForbidden {
							t.Errorf("%s %s %s: %v; want 403 (or a failed handshake)", a.api, a.method, path, r)
						}
						if strings.Contains(string(r.body), hex.EncodeToString(idBytes(t, v.id))) {
							t.Errorf("%s %s %s: the reply names the victim: %v", a.api, a.method, path, r)
						}
					}
				})
			}
		}
	}

	// Nothing the attacker asked for exists.
	c := n.RootClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := c.ListKeys(ctx, &kms.ListRequest{Enclave: "default", Prefix: "forged-"})
	authnMust(t, err)
	if len(keys.Items) > 0 {
		t.Errorf("the attacker created %d keys as the victim, e.g. %s", len(keys.Items), keys.Items[0].Name)
	}
	enclaves, err := c.ListEnclaves(ctx, &kms.ListRequest{Prefix: "forged-"})
	authnMust(t, err)
	if len(enclaves.Items) > 0 {
		t.Errorf("the attacker created %d enclaves as the victim", len(enclaves.Items))
	}
}

// idBytes is the SHA-256 an identity spells.
func idBytes(t *testing.T, id mtls.Identity) []byte {
	t.Helper()
	b, err := id.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b[3:] // after "h1:"
}

// route is a route of one of the APIs and the status each kind of caller
// gets on it (0: not tried with that caller). Bodies are what the route
// takes; the callers' requests do no harm when allowed.
type routeCase struct {
	method, path string
	body         func(t *testing.T) []byte
	unknown      int // an identity registered nowhere
	user         int // a User of the KES enclave, allowed KEY:GENERATE on minio-*
	admin        int // an Admin of the KES enclave
}

func routeCases() []routeCase {
	status := func(t *testing.T) []byte {
		return kmsFrames(t, cmds.KeyStatus, &pb.KeyStatusRequest{Name: "nope"})
	}
	return []routeCase{
		// MinIO KMS API and management routes.
		{"GET", "/version", nil, 200, 200, 200},
		{"GET", "/v1/health/live", nil, 200, 200, 200},
		{"GET", "/v1/health/ready", nil, 200, 200, 200},
		{"GET", "/v1/health/status", nil, 403, 403, 403},
		{"GET", "/v1/health/metrics", nil, 403, 403, 403},
		{"POST", "/v1/kms/default", status, 403, 403, 404},
		{"POST", "/v1/kms", status, 403, 403, 404},
		{"POST", "/v1/debug/restart", nil, 403, 403, 403},
		{"GET", "/v1/db", nil, 403, 403, 403},
		{"PUT", "/v1/db", func(*testing.T) []byte { return []byte("{}") }, 403, 403, 403},
		{"POST", "/v1/debug/pprof", nil, 403, 403, 403},
		{"GET", "/v1/debug/pprof", nil, 403, 403, 403},
		{"DELETE", "/v1/debug/pprof", nil, 403, 403, 403},
		{"POST", "/v1/debug/log", func(*testing.T) []byte { return nil }, 403, 403, 403},
		{"GET", "/v1/config", nil, 403, 403, 403},
		{"PUT", "/v1/config", func(*testing.T) []byte { return []byte(`{"metrics.auth":"public"}`) }, 403, 403, 403},
		// KES API.
		{"GET", "/v1/ready", nil, 403, 200, 200},
		{"GET", "/v1/status", nil, 403, 200, 200},
		{"GET", "/v1/metrics", nil, 403, 200, 200},
		{"GET", "/v1/api", nil, 403, 200, 200},
		{"PUT", "/v1/key/create/route-test", nil, 403, 403, 200},
		{"PUT", "/v1/key/import/route-test", func(*testing.T) []byte {
			return []byte(`{"key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","cipher":"AES256"}`)
		}, 403, 403, 400},
		{"GET", "/v1/key/describe/minio-key", nil, 403, 403, 200},
		{"GET", "/v1/key/list/*", nil, 403, 403, 200},
		{"PUT", "/v1/key/generate/minio-key", func(*testing.T) []byte { return []byte("{}") }, 403, 200, 200},
		{"PUT", "/v1/key/generate/route-test", func(*testing.T) []byte { return []byte("{}") }, 403, 403, 200},
		{"PUT", "/v1/key/encrypt/minio-key", func(*testing.T) []byte { return []byte(`{"plaintext":"AAAA"}`) }, 403, 403, 200},
		{"PUT", "/v1/key/decrypt/minio-key", func(*testing.T) []byte { return []byte(`{"ciphertext":"AAAA"}`) }, 403, 403, 400},
		{"PUT", "/v1/key/hmac/minio-key", func(*testing.T) []byte { return []byte(`{"message":"AAAA"}`) }, 403, 200, 200},
		{"DELETE", "/v1/key/delete/route-test", nil, 403, 403, 200},
		{"GET", "/v1/policy/describe/generate-minio", nil, 403, 403, 200},
		{"GET", "/v1/policy/read/generate-minio", nil, 403, 403, 200},
		{"GET", "/v1/policy/list/*", nil, 403, 403, 200},
		{"GET", "/v1/identity/describe/" + strings.Repeat("ab", 32), nil, 403, 403, 404},
		{"GET", "/v1/identity/list/*", nil, 403, 403, 200},
		{"GET", "/v1/identity/self/describe", nil, 403, 200, 200},
		{"GET", "/v1/log/error", nil, 403, 403, 403},
		{"GET", "/v1/log/audit", nil, 403, 403, 403},
	}
}

// TestDeclaredAccess calls every route of both APIs as an unknown
// identity, a User and an Admin, and checks the status each gets, in
// order (the Admin creates, then deletes, the key route-test).
func TestDeclaredAccess(t *testing.T) {
	tn := startAuthnTenants(t, "")
	callers := []struct {
		name string
		key  mtls.PrivateKey
		want func(routeCase) int
	}{
		{"unknown", tn.unknown, func(c routeCase) int { return c.unknown }},
		{"user", tn.user, func(c routeCase) int { return c.user }},
		{"admin", tn.admin, func(c routeCase) int { return c.admin }},
	}
	for _, c := range callers {
		hc := authnClient(t, authnCert(t, c.key), true, 10*time.Second)
		for _, rc := range routeCases() {
			want := c.want(rc)
			var body []byte
			if rc.body != nil {
				body = rc.body(t)
			}
			r := authnSend(hc, rc.method, tn.n.Endpoint()+rc.path, body, 1<<20)
			if r.err != nil || r.status != want {
				t.Errorf("%s: %s %s: %v, want %d", c.name, rc.method, rc.path, r, want)
			}
		}
	}
}

// TestRefusedBeforeBody sends, as an unknown identity, a User and an
// Admin, requests to routes they may not call (for /v1/kms: as the unknown
// identity), with a body that announces
// a mebibyte and never ends: the 403 must arrive while the body is still
// being sent, over HTTP/1.1 and HTTP/2.
//
// On the code before the fix every route that takes a body read it first
// (/v1/kms, /v1/db, /v1/config, KES key routes), so the 403 never came.
func TestRefusedBeforeBody(t *testing.T) {
	tn := startAuthnTenants(t, "")
	callers := map[string]mtls.PrivateKey{"unknown": tn.unknown, "user": tn.user, "admin": tn.admin}
	for name, key := range callers {
		for _, rc := range routeCases() {
			forbidden := map[string]int{"unknown": rc.unknown, "user": rc.user, "admin": rc.admin}[name] == 403
			// POST /v1/kms admits every registered identity: what each may
			// do is decided per command, which needs the body.
			kms := strings.HasPrefix(rc.path, "/v1/kms")
			if rc.body == nil || !forbidden || kms && name != "unknown" {
				continue
			}
			for _, h2 := range []bool{false, true} {
				status, err := endlessBody(t, tn.n.Endpoint(), key, rc.method, rc.path, h2)
				if err != nil || status != http.StatusForbidden {
					t.Errorf("%s: %s %s (h2=%v) with an endless body: status %d, %v; want 403 before the body ends", name, rc.method, rc.path, h2, status, err)
				}
			}
		}
	}
}

// endlessBody sends a request whose body announces 1 MiB, sends 100 bytes
// and then nothing, and returns the status that arrives within 5 seconds.
// HTTP/1.1 goes over a raw TLS connection: Go's client waits for its
// request body to be written before it hands over an early reply.
func endlessBody(t *testing.T, endpoint string, key mtls.PrivateKey, method, path string, h2 bool) (int, error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	if !h2 {
		conf := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{*authnCert(t, key)}, NextProtos: []string{"http/1.1"}}
		c, err := tls.Dial("tcp", strings.TrimPrefix(endpoint, "https://"), conf)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		c.SetDeadline(deadline)
		head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: keep\r\nContent-Length: %d\r\n\r\n", method, path, 1<<20)
		if _, err := c.Write(append([]byte(head), make([]byte, 100)...)); err != nil {
			return 0, err
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write(make([]byte, 100))
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(context.DeadlineExceeded) })
	defer stop()
	req, err := http.NewRequestWithContext(ctx, method, endpoint+path, pr)
	if err != nil {
		return 0, err
	}
	req.ContentLength = 1 << 20
	hc := authnClient(t, authnCert(t, key), true, 0)
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	if time.Now().After(deadline) {
		return res.StatusCode, context.DeadlineExceeded
	}
	return res.StatusCode, nil
}
