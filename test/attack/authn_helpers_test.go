package attack

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	"google.golang.org/protobuf/proto"

	"github.com/keep-kms/keep/test/testnode"
)

// authnTenants is a dev node with one identity of each kind in the default
// enclave (the KES API's): a SysAdmin, an Admin, and a User whose policy
// allows KEY:GENERATE on minio-* only; unknown is registered nowhere.
type authnTenants struct {
	n                              *testnode.Node
	sysAdmin, admin, user, unknown mtls.PrivateKey
}

// startAuthnTenants starts a dev node (with the config file conf, if not "")
// and registers its tenants.
func startAuthnTenants(t *testing.T, conf string) *authnTenants {
	t.Helper()
	opts := testnode.Options{Dev: true}
	if conf != "" {
		opts.Config = authnConfigFile(t, conf)
	}
	n := testnode.Start(t, opts)
	tn := &authnTenants{n: n, sysAdmin: testnode.NewAPIKey(t), admin: testnode.NewAPIKey(t), user: testnode.NewAPIKey(t), unknown: testnode.NewAPIKey(t)}
	c := n.RootClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	authnMust(t, c.CreatePolicy(ctx, "default", &kms.CreatePolicyRequest{Name: "generate-minio", Allow: map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: {"minio-*": {}}}}))
	authnMust(t, c.CreateIdentity(ctx, "default", &kms.CreateIdentityRequest{Identity: tn.sysAdmin.Identity(), Privilege: kms.SysAdmin}))
	authnMust(t, c.CreateIdentity(ctx, "default", &kms.CreateIdentityRequest{Identity: tn.admin.Identity(), Privilege: kms.Admin}))
	authnMust(t, c.CreateIdentity(ctx, "default", &kms.CreateIdentityRequest{Identity: tn.user.Identity(), Privilege: kms.User}))
	authnMust(t, c.AssignPolicy(ctx, "default", &kms.AssignPolicyRequest{Identity: tn.user.Identity(), Policy: "generate-minio"}))
	authnMust(t, c.CreateKey(ctx, "default", &kms.CreateKeyRequest{Name: "minio-key"}))
	return tn
}

func authnMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(testnode.DescribeErr(err))
	}
}

// authnConfigFile writes a keep config file and returns its path.
func authnConfigFile(t *testing.T, conf string) string {
	t.Helper()
	path := t.TempDir() + "/keep.yaml"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// forgedCert makes the certificates an attacker holding the key attacker
// sends to be taken for the holder of victim (whose public key is all it
// knows): its own self-signed CA, a second CA of its own, its own leaf, a
// certificate of the victim's key signed by the attacker, and the same
// marked as a CA. order picks and orders them; the private key is always
// the attacker's, the only one it has.
func forgedCert(t *testing.T, attacker mtls.PrivateKey, victim crypto.PublicKey, order []string) tls.Certificate {
	t.Helper()
	signer := attacker.Private().(crypto.Signer)
	issue := func(pub crypto.PublicKey, isCA bool, parent *x509.Certificate) *x509.Certificate {
		return testnode.Certificate(t, pub, signer, parent, isCA)
	}
	ownCA := issue(attacker.Public(), true, nil)
	certs := map[string]*x509.Certificate{
		"own CA":          ownCA,
		"own CA 2":        issue(attacker.Public(), true, nil),
		"own leaf":        issue(attacker.Public(), false, nil),
		"victim-key cert": issue(victim, false, ownCA),
		"victim-key CA":   issue(victim, true, ownCA),
	}
	out := tls.Certificate{PrivateKey: attacker.Private()}
	for _, name := range order {
		out.Certificate = append(out.Certificate, certs[name].Raw)
	}
	return out
}

// authnClient is an HTTPS client (HTTP/2, or HTTP/1.1 only) presenting
// cert; nil cert presents none.
func authnClient(t *testing.T, cert *tls.Certificate, h2 bool, timeout time.Duration) *http.Client {
	t.Helper()
	conf := &tls.Config{InsecureSkipVerify: true}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	var protos http.Protocols
	protos.SetHTTP1(!h2)
	protos.SetHTTP2(h2)
	rt := &http.Transport{TLSClientConfig: conf, DisableCompression: true, ForceAttemptHTTP2: h2, Protocols: &protos}
	t.Cleanup(rt.CloseIdleConnections)
	return &http.Client{Transport: rt, Timeout: timeout}
}

// authnCert is the certificate kms-go makes for an API key.
func authnCert(t *testing.T, key mtls.PrivateKey) *tls.Certificate {
	t.Helper()
	if key == nil {
		return nil
	}
	c, err := kms.GenerateCertificate(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// kmsFrames encodes commands as a /v1/kms body (spec §3.1).
func kmsFrames(t testing.TB, cmd cmds.Command, msgs ...proto.Message) []byte {
	t.Helper()
	var body []byte
	for _, m := range msgs {
		p, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		body = binary.BigEndian.AppendUint16(body, uint16(cmd))
		body = binary.BigEndian.AppendUint32(body, uint32(len(p)))
		body = append(body, p...)
	}
	return body
}

// authnReply is a finished HTTP exchange, or the error that ended it.
type authnReply struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (r authnReply) String() string {
	if r.err != nil {
		return "error " + r.err.Error()
	}
	return fmt.Sprintf("%d %q", r.status, authnTrim(r.body, 200))
}

func authnTrim(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// authnSend does one request and reads at most limit bytes of its reply.
func authnSend(hc *http.Client, method, url string, body []byte, limit int64) authnReply {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return authnReply{err: err}
	}
	res, err := hc.Do(req)
	if err != nil {
		return authnReply{err: err}
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, limit))
	return authnReply{status: res.StatusCode, header: res.Header, body: data, err: err}
}

// rssKiB is the resident memory of process pid, from /proc.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kib, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kib
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}
