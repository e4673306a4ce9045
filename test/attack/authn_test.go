package attack

import (
	"context"
	"crypto"
	"encoding/hex"
	"fmt"
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

// attempt is one request an impersonator tries on an API.
type attempt struct {
	api, method, path string
	body              func(t *testing.T, i int) []byte
}

// attempts are requests on every API that would do harm, or reveal
// something, if the attacker were taken for the victim. %d is replaced by
// a number unique per try, so that a success leaves a trace.
var attempts = []attempt{
	{"minkms", http.MethodPost, "/v1/kms/default", func(t *testing.T, i int) []byte {
		return frames(t, cmds.KeyCreate, &pb.CreateKeyRequest{Name: fmt.Sprintf("forged-%d", i)})
	}},
	{"minkms", http.MethodPost, "/v1/kms", func(t *testing.T, i int) []byte {
		return frames(t, cmds.EnclaveCreate, &pb.CreateEnclaveRequest{Name: fmt.Sprintf("forged-%d", i)})
	}},
	{"minkms", http.MethodPost, "/v1/kms/default", func(t *testing.T, i int) []byte {
		return frames(t, cmds.KeyGenerate, &pb.GenerateKeyRequest{Name: "minio-key"})
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
	tn := startTenants(t, "")
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
					hc := certClient(t, &cert, h2, 5*time.Second)
					for _, a := range attempts {
						try++
						path := a.path
						if strings.Contains(path, "%d") {
							path = fmt.Sprintf(path, try)
						}
						var body []byte
						if a.body != nil {
							body = a.body(t, try)
						}
						r := send(hc, a.method, n.Endpoint()+path, body, 1<<20)
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
	must(t, err)
	if len(keys.Items) > 0 {
		t.Errorf("the attacker created %d keys as the victim, e.g. %s", len(keys.Items), keys.Items[0].Name)
	}
	enclaves, err := c.ListEnclaves(ctx, &kms.ListRequest{Prefix: "forged-"})
	must(t, err)
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
