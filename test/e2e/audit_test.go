package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/test/testnode"
)

// auditEvent is one line of the audit log.
type auditEvent struct {
	Time     time.Time `json:"time"`
	Node     string    `json:"node"`
	Identity string    `json:"identity"`
	IP       string    `json:"ip"`
	API      string    `json:"api"`
	Command  string    `json:"command"`
	Enclave  string    `json:"enclave"`
	Resource string    `json:"resource"`
	Status   int       `json:"status"`
	Error    string    `json:"error"`
	Latency  int64     `json:"latency_ns"`
}

// readAudit returns the events of the audit file at path.
func readAudit(t *testing.T, path string) []auditEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	var events []auditEvent
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e auditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("audit log line %d is not JSON: %v: %s", i+1, err, line)
		}
		events = append(events, e)
	}
	return events
}

// auditedBy returns the events the audit file at path gains while fn runs,
// waiting up to wait for them to be written.
func auditedBy(t *testing.T, path string, want int, wait time.Duration, fn func() error) ([]auditEvent, error) {
	t.Helper()
	before := len(readAudit(t, path))
	err := fn()
	var events []auditEvent
	waitFor(wait, func() bool {
		events = readAudit(t, path)[before:]
		return len(events) >= want
	})
	return events, err
}

// auditCase is one request and the audit record it must produce.
type auditCase struct {
	name     string
	command  string
	enclave  string
	resource string // "" = not checked
	run      func(ctx context.Context) error
}

// TestAuditRecords makes every kind of request and checks that each
// produces exactly one audit line with the right fields, that requests
// which are not commands produce none, and that no secret reaches the
// audit log.
func TestAuditRecords(t *testing.T) {
	t.Parallel()
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	n := testnode.Start(t, testnode.Options{Config: writeConfigFile(t, "version: v1\naudit:\n  sink: "+auditFile+"\n")})
	ctx := ctxT(t)
	c := n.RootClient(t)
	rootID := n.Root.Identity().String()

	// The secrets: an imported key, plaintexts and data keys, ciphertexts
	// and associated data.
	imported := randBytes(t, 32)
	plaintext := randBytes(t, 48)
	aad := []byte("audit-associated-data-" + hex.EncodeToString(randBytes(t, 12)))
	var secrets [][]byte
	secrets = append(secrets, imported, plaintext, aad)

	user := testnode.NewAPIKey(t)
	var ciphertext []byte
	allow := map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: {}}
	cases := []auditCase{
		{"create enclave", "ENCLAVE:CREATE", "", "audit", func(ctx context.Context) error {
			return c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "audit"})
		}},
		{"enclave status", "ENCLAVE:STATUS", "", "audit", func(ctx context.Context) error {
			_, err := c.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: "audit"})
			return err
		}},
		{"list enclaves", "ENCLAVE:LIST", "", "", func(ctx context.Context) error {
			_, err := c.ListEnclaves(ctx, &kms.ListRequest{})
			return err
		}},
		{"create key", "KEY:CREATE", "audit", "made", func(ctx context.Context) error {
			return c.CreateKey(ctx, "audit", &kms.CreateKeyRequest{Name: "made"})
		}},
		{"import key", "KEY:IMPORT", "audit", "imported", func(ctx context.Context) error {
			return c.ImportKey(ctx, "audit", &kms.ImportKeyRequest{Name: "imported", Type: kms.AES256, Key: imported})
		}},
		{"key status", "KEY:STATUS", "audit", "imported", func(ctx context.Context) error {
			_, err := c.KeyStatus(ctx, "audit", &kms.KeyStatusRequest{Name: "imported"})
			return err
		}},
		{"list keys", "KEY:LIST", "audit", "", func(ctx context.Context) error {
			_, err := c.ListKeys(ctx, &kms.ListRequest{Enclave: "audit"})
			return err
		}},
		{"encrypt", "KEY:ENCRYPT", "audit", "imported", func(ctx context.Context) error {
			r, err := encrypt(ctx, c, "audit", &kms.EncryptRequest{Name: "imported", Plaintext: plaintext, AssociatedData: aad})
			if err == nil {
				ciphertext = r[0].Ciphertext
				secrets = append(secrets, r[0].Ciphertext)
			}
			return err
		}},
		{"decrypt", "KEY:DECRYPT", "audit", "imported", func(ctx context.Context) error {
			r, err := c.Decrypt(ctx, "audit", &kms.DecryptRequest{Name: "imported", Ciphertext: ciphertext, AssociatedData: aad})
			if err == nil && !bytes.Equal(r[0].Plaintext, plaintext) {
				return fmt.Errorf("decrypt returned another plaintext")
			}
			return err
		}},
		{"generate", "KEY:GENERATE", "audit", "made", func(ctx context.Context) error {
			r, err := c.GenerateKey(ctx, "audit", &kms.GenerateKeyRequest{Name: "made", AssociatedData: aad, Length: 32})
			if err == nil {
				secrets = append(secrets, r[0].Plaintext, r[0].Ciphertext)
			}
			return err
		}},
		{"create policy", "POLICY:CREATE", "audit", "pol", func(ctx context.Context) error {
			return c.CreatePolicy(ctx, "audit", &kms.CreatePolicyRequest{Name: "pol", Allow: allow})
		}},
		{"get policy", "POLICY:GET", "audit", "pol", func(ctx context.Context) error {
			_, err := c.GetPolicy(ctx, "audit", &kms.PolicyRequest{Name: "pol"})
			return err
		}},
		{"policy status", "POLICY:STATUS", "audit", "pol", func(ctx context.Context) error {
			_, err := c.PolicyStatus(ctx, "audit", &kms.PolicyRequest{Name: "pol"})
			return err
		}},
		{"list policies", "POLICY:LIST", "audit", "", func(ctx context.Context) error {
			_, err := c.ListPolicies(ctx, &kms.ListRequest{Enclave: "audit"})
			return err
		}},
		{"create identity", "IDENTITY:CREATE", "audit", user.Identity().String(), func(ctx context.Context) error {
			return c.CreateIdentity(ctx, "audit", &kms.CreateIdentityRequest{Identity: user.Identity(), Privilege: kms.User})
		}},
		{"assign policy", "POLICY:ASSIGN", "audit", user.Identity().String(), func(ctx context.Context) error {
			return c.AssignPolicy(ctx, "audit", &kms.AssignPolicyRequest{Policy: "pol", Identity: user.Identity()})
		}},
		{"identity status", "IDENTITY:STATUS", "audit", user.Identity().String(), func(ctx context.Context) error {
			_, err := c.GetIdentity(ctx, "audit", &kms.IdentityRequest{Identity: user.Identity()})
			return err
		}},
		{"list identities", "IDENTITY:LIST", "audit", "", func(ctx context.Context) error {
			_, err := c.ListIdentities(ctx, &kms.ListRequest{Enclave: "audit"})
			return err
		}},
		{"delete identity", "IDENTITY:DELETE", "audit", user.Identity().String(), func(ctx context.Context) error {
			return c.DeleteIdentity(ctx, "audit", &kms.DeleteIdentityRequest{Identity: user.Identity()})
		}},
		{"delete policy", "POLICY:DELETE", "audit", "pol", func(ctx context.Context) error {
			return c.DeletePolicy(ctx, "audit", &kms.DeletePolicyRequest{Name: "pol"})
		}},
		{"delete key", "KEY:DELETE", "audit", "made", func(ctx context.Context) error {
			return c.DeleteKey(ctx, "audit", &kms.DeleteKeyRequest{Name: "made"})
		}},
		{"cluster status", "CLUSTER:STATUS", "", "", func(ctx context.Context) error {
			_, err := c.ClusterStatus(ctx, &kms.ClusterStatusRequest{})
			return err
		}},
		{"config", "NODE:CONFIG", "", "GET", func(ctx context.Context) error {
			getConfig(t, n)
			return nil
		}},
		{"start profiling", "NODE:PPROF", "", "", func(ctx context.Context) error {
			return c.StartProfiling(ctx, &kms.ProfileRequest{Host: n.Addr, Heap: true})
		}},
		{"profiling status", "NODE:PPROF", "", "GET", func(ctx context.Context) error {
			_, err := c.ProfilingStatus(ctx, &kms.ProfileRequest{Host: n.Addr})
			return err
		}},
		{"stop profiling", "NODE:PPROF", "", "DELETE", func(ctx context.Context) error {
			r, err := c.StopProfiling(ctx, &kms.ProfileRequest{Host: n.Addr})
			if err == nil {
				io.Copy(io.Discard, r)
				r.Close()
			}
			return err
		}},
		{"backup", "NODE:DB", "", "GET", func(ctx context.Context) error {
			r, err := c.ReadDB(ctx, &kms.ReadDBRequest{})
			if err == nil {
				io.Copy(io.Discard, r.Body)
				r.Close()
			}
			return err
		}},
		{"log stream", "NODE:LOG", "", "", func(ctx context.Context) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			r, err := c.Logs(ctx, &kms.LogRequest{Host: n.Addr})
			if err == nil {
				cancel()
				r.Close()
			}
			return err
		}},
	}
	for _, tc := range cases {
		events, err := auditedBy(t, auditFile, 1, 5*time.Second, func() error { return tc.run(ctx) })
		noErr(t, err, tc.name)
		if len(events) != 1 {
			t.Errorf("%s: %d audit lines, want 1: %+v", tc.name, len(events), events)
			continue
		}
		e := events[0]
		switch {
		case e.Command != tc.command, e.API != "minkms", e.Status != http.StatusOK, e.Error != "",
			e.Identity != rootID, e.Node != n.Addr, e.IP == "", e.Enclave != tc.enclave,
			tc.resource != "" && !strings.HasPrefix(e.Resource, tc.resource),
			time.Since(e.Time) > time.Minute, e.Latency < 0:
			t.Errorf("%s: audit line %+v, want command %s, enclave %q, resource %q, status 200 by %s on %s",
				tc.name, e, tc.command, tc.enclave, tc.resource, rootID, n.Addr)
		}
	}

	// A batch: one line per command. A failed command: its status and
	// error.
	events, err := auditedBy(t, auditFile, 3, 5*time.Second, func() error {
		r := &kms.GenerateKeyRequest{Name: "imported", AssociatedData: aad, Length: 32}
		res, err := c.GenerateKey(ctx, "audit", r, r, r)
		for _, g := range res {
			secrets = append(secrets, g.Plaintext, g.Ciphertext)
		}
		return err
	})
	noErr(t, err, "GenerateKey batch of 3")
	if len(events) != 3 {
		t.Errorf("a batch of 3 generates: %d audit lines, want 3", len(events))
	}
	events, err = auditedBy(t, auditFile, 1, 5*time.Second, func() error {
		_, err := c.KeyStatus(ctx, "audit", &kms.KeyStatusRequest{Name: "missing"})
		return err
	})
	errStatus(t, err, http.StatusNotFound, "KeyStatus of a missing key")
	if len(events) != 1 || events[0].Status != http.StatusNotFound || events[0].Error == "" || events[0].Command != "KEY:STATUS" {
		t.Errorf("a failed KEY:STATUS: audit lines %+v, want one with status 404 and its error", events)
	}

	// Probes and scrapes are not commands.
	events, _ = auditedBy(t, auditFile, 1, 500*time.Millisecond, func() error {
		hc := testnode.HTTPClientProto(t, n.Root, true, time.Minute)
		for _, path := range []string{"/version", "/v1/health/live", "/v1/health/ready", "/v1/health/metrics"} {
			do(t, hc, http.MethodGet, "https://"+n.Addr+path, nil, nil)
		}
		return nil
	})
	if len(events) != 0 {
		t.Errorf("health probes and scrapes: %d audit lines, want none: %+v", len(events), events)
	}

	// No secret, in any spelling.
	log, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range secrets {
		for _, spelling := range []string{
			string(s), hex.EncodeToString(s),
			base64.StdEncoding.EncodeToString(s), base64.RawStdEncoding.EncodeToString(s),
			base64.URLEncoding.EncodeToString(s), base64.RawURLEncoding.EncodeToString(s),
		} {
			if bytes.Contains(log, []byte(spelling)) {
				t.Errorf("the audit log holds secret %d (%d bytes) as %q", i, len(s), spelling)
			}
		}
	}
}

// TestAuditFailClosed checks that requests are refused while the audit
// sink cannot be written, unless audit.fail_open is set, and that the
// operator's way out, /v1/config with audit=off, stays open.
func TestAuditFailClosed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() // a directory is no file an audit log can be written to
	sinks := map[string]string{"directory": dir}
	if os.Geteuid() != 0 { // root writes read-only files
		readOnly := filepath.Join(t.TempDir(), "audit.log")
		writeFile(t, readOnly, nil)
		if err := os.Chmod(readOnly, 0o400); err != nil {
			t.Fatal(err)
		}
		sinks["read-only file"] = readOnly
	}
	for name, sink := range sinks {
		for _, failOpen := range []bool{false, true} {
			cfg := writeConfigFile(t, fmt.Sprintf("version: v1\naudit:\n  sink: %s\n  fail_open: %v\n", sink, failOpen))
			n := testnode.Start(t, testnode.Options{Config: cfg})
			ctx := ctxT(t)
			c := n.RootClient(t)
			what := fmt.Sprintf("audit sink %s, fail_open %v", name, failOpen)

			err := c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "k"})
			_, genErr := c.GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: "k", Length: 32})
			cfgReply := do(t, testnode.HTTPClientProto(t, n.Root, true, time.Minute), http.MethodGet, "https://"+n.Addr+"/v1/config", nil, nil)
			if cfgReply.Status != http.StatusOK {
				t.Errorf("%s: GET /v1/config: %d, want 200", what, cfgReply.Status)
			}
			if failOpen {
				noErr(t, err, what+": CreateKey")
				noErr(t, genErr, what+": GenerateKey")
			} else {
				errIs(t, err, kms.Error{Code: http.StatusServiceUnavailable, Err: "audit log is unavailable"}, what+": CreateKey")
				errIs(t, genErr, kms.Error{Code: http.StatusServiceUnavailable, Err: "audit log is unavailable"}, what+": GenerateKey")
				// Switching audit off is the way out.
				off := do(t, testnode.HTTPClientProto(t, n.Root, true, time.Minute), http.MethodPut, "https://"+n.Addr+"/v1/config", []byte(`{"audit":"off"}`), nil)
				if off.Status != http.StatusOK {
					t.Fatalf("%s: PUT /v1/config audit=off: %d", what, off.Status)
				}
				noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "k"}), what+": CreateKey with audit off")
			}
			// Probes still answer: the node is alive.
			if r := do(t, testnode.HTTPClientProto(t, nil, true, time.Minute), http.MethodGet, "https://"+n.Addr+"/version", nil, nil); r.Status != http.StatusOK {
				t.Errorf("%s: /version: %d, want 200", what, r.Status)
			}
			n.Kill()
		}
	}
}
