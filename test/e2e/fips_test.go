package e2e

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/keep-kms/keep/test/testnode"
)

// versionReply is the JSON reply of GET /version (spec §2.2).
type versionReply struct {
	Version    string `json:"version"`
	Commit     string `json:"commit"`
	APIVersion string `json:"api_version"`
	Host       string `json:"host"`
	FIPS140    bool   `json:"fips140"`
}

// TestFIPS140 runs a two-node cluster in Go's FIPS 140-3 mode
// (GODEBUG=fips140=on) next to a node outside it: /version and
// `keep version` say which mode a binary runs in, the same build values in
// both; the FIPS nodes join, replicate and serve data keys; and their TLS
// really is restricted (a client offering only X25519, or only
// ChaCha20-Poly1305, is refused) while the other node accepts both.
func TestFIPS140(t *testing.T) {
	fipsEnv := []string{"GODEBUG=fips140=on"}
	n0 := testnode.Start(t, testnode.Options{Name: "fips-0", ExtraEnv: fipsEnv})
	n1 := testnode.Start(t, testnode.Options{Name: "fips-1", HSMKey: n0.HSMKey, ExtraEnv: fipsEnv})
	// The test's own GODEBUG reaches the nodes (testnode.BaseEnv): this one
	// is off whatever it is.
	plain := testnode.Start(t, testnode.Options{Name: "plain", ExtraEnv: []string{"GODEBUG=fips140=off"}})

	var local struct {
		Version string `json:"version"`
		Commit  string `json:"commit"`
		FIPS140 bool   `json:"fips140"`
	}
	cliJSON(t, []string{"GODEBUG=fips140=on"}, &local, "version")
	if !local.FIPS140 {
		t.Error("keep version --json under GODEBUG=fips140=on: fips140 false")
	}
	var off struct {
		FIPS140 bool `json:"fips140"`
	}
	cliJSON(t, []string{"GODEBUG=fips140=off"}, &off, "version")
	if off.FIPS140 {
		t.Error("keep version --json under GODEBUG=fips140=off: fips140 true")
	}

	hc := testnode.HTTPClient(t, nil, 10*time.Second)
	for _, tc := range []struct {
		n    *testnode.Node
		fips bool
	}{{n0, true}, {n1, true}, {plain, false}} {
		r := do(t, hc, "GET", "https://"+tc.n.Addr+"/version", nil, map[string]string{"Accept": "application/json"})
		var v versionReply
		if err := json.Unmarshal(r.Body, &v); r.Status != 200 || err != nil {
			t.Fatalf("%s: GET /version: %d %q: %v", tc.n.Name, r.Status, r.Body, err)
		}
		if v.FIPS140 != tc.fips || v.Host != tc.n.Host || v.Version != local.Version || v.Commit != local.Commit {
			t.Errorf("%s: /version %+v, want fips140 %v, host %s, version %q and commit %q as keep version", tc.n.Name, v, tc.fips, tc.n.Host, local.Version, local.Commit)
		}
		if got := strings.Contains(tc.n.Banner, "fips140=on"); got != tc.fips {
			t.Errorf("%s: banner says fips140=on: %v, want %v:\n%s", tc.n.Name, got, tc.fips, tc.n.Banner)
		}
	}

	// Peers handshake with each other in FIPS mode: join, replicate, and
	// read a data key back on the other node.
	env := cliEnv(n0)
	cliOK(t, env, "add", n1.Host, "-k")
	cliOK(t, env, "add-key", "fips-key", "-k")
	var dek struct {
		Plaintext  string `json:"plaintext"`
		Ciphertext string `json:"ciphertext"`
	}
	cliJSON(t, env, &dek, "keygen", "fips-key", "-k")
	env1 := []string{"MINIO_KMS_SERVER=https://" + n1.Addr, "MINIO_KMS_API_KEY=" + n0.APIKey}
	if !waitFor(10*time.Second, func() bool {
		out, _, code := runCLI(t, env1, "decrypt", "fips-key", dek.Ciphertext, "-k")
		return code == 0 && strings.TrimSpace(out) == dek.Plaintext
	}) {
		t.Error("the data key generated on fips-0 does not decrypt on fips-1")
	}

	for _, tc := range []struct {
		name string
		conf *tls.Config
	}{
		{"X25519 only", &tls.Config{CurvePreferences: []tls.CurveID{tls.X25519}}},
		{"ChaCha20-Poly1305 only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		}}},
	} {
		tc.conf.InsecureSkipVerify = true
		if err := handshake(plain.Addr, tc.conf); err != nil {
			t.Errorf("%s: the node outside FIPS mode refused the handshake: %v", tc.name, err)
		}
		if err := handshake(n0.Addr, tc.conf); err == nil {
			t.Errorf("%s: the node in FIPS mode accepted the handshake", tc.name)
		}
	}
}

// handshake completes a TLS handshake with addr.
func handshake(addr string, conf *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return err
	}
	return conn.Close()
}
