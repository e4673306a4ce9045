package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/test/testnode"
)

// runCLI runs the keep binary with args and the environment env (on top of
// a clean one) and returns its output and exit code.
func runCLI(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	r := testnode.Run(t, append(testnode.BaseEnv(t.TempDir()), env...), args...)
	return r.Stdout, r.Stderr, r.Code
}

// cliOK runs the CLI and fails the test unless it exits 0.
func cliOK(t *testing.T, env []string, args ...string) string {
	t.Helper()
	stdout, stderr, code := runCLI(t, env, args...)
	if code != 0 {
		t.Fatalf("keep %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// cliFails runs the CLI and checks that it exits with want and prints one
// line on stderr containing each of contains.
func cliFails(t *testing.T, env []string, want int, contains []string, args ...string) {
	t.Helper()
	stdout, stderr, code := runCLI(t, env, args...)
	if code != want {
		t.Errorf("keep %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, stdout, stderr)
	}
	msg := strings.TrimSpace(stderr)
	if msg == "" || strings.Contains(msg, "\n") {
		t.Errorf("keep %s: stderr %q, want one line", strings.Join(args, " "), stderr)
	}
	for _, s := range contains {
		if !strings.Contains(msg, s) {
			t.Errorf("keep %s: stderr %q does not contain %q", strings.Join(args, " "), msg, s)
		}
	}
}

func cliJSON(t *testing.T, env []string, v any, args ...string) {
	t.Helper()
	out := cliOK(t, env, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("keep %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestCLILocal(t *testing.T) {
	t.Parallel()
	hsmRE := regexp.MustCompile(`^hsm:aes256:([A-Za-z0-9+/]{43}=)$`)
	var keys []string
	for range 2 {
		out := cliOK(t, nil, "--soft-hsm")
		line := strings.TrimSpace(out)
		m := hsmRE.FindStringSubmatch(line)
		if m == nil || strings.Count(out, "\n") != 1 {
			t.Fatalf("keep --soft-hsm: stdout %q, want one line hsm:aes256:<base64 of 32 bytes>", out)
		}
		if b, err := base64.StdEncoding.DecodeString(m[1]); err != nil || len(b) != 32 {
			t.Errorf("keep --soft-hsm: %q does not hold 32 bytes", line)
		}
		keys = append(keys, line)
	}
	if keys[0] == keys[1] {
		t.Errorf("keep --soft-hsm printed the same key twice")
	}

	for _, tc := range []struct{ key, id string }{
		{"k1:AqwjUvaWEE9O83quGOkiO_2D1x37Za9gE4L5UHdq0Ag", "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0"},
		{"k1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA", "h1:ZG1r5J2fAEj5T2d0nso1FW7tT3p74Y5PxKlL_UTjALA"},
		{"k2:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA", "h1:8dWUSbcnFl3nMr8oMzgSK5liimFZGP7cZ9h4__z0fac"},
	} {
		out := cliOK(t, nil, "identity", tc.key)
		if !strings.Contains(out, tc.id) {
			t.Errorf("keep identity %s: %q, want it to print %s", tc.key, out, tc.id)
		}
	}

	out := cliOK(t, nil, "--help")
	for _, c := range []string{"server", "add-enclave", "add-key", "ls-key", "stat-key", "keygen", "decrypt", "add-policy", "set-policy", "add-identity", "get-identity", "identity"} {
		if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(c) + `\s`).MatchString(out) {
			t.Errorf("keep --help does not list %q", c)
		}
	}
	cliFails(t, nil, 2, nil, "no-such-command")
}

// TestCLI drives a node with the keep CLI as an operator would.
func TestCLI(t *testing.T) {
	t.Parallel()
	hsmKey := strings.TrimSpace(cliOK(t, nil, "--soft-hsm"))
	n := testnode.Start(t, testnode.Options{HSMKey: hsmKey})
	n.DeleteAtOnce(t)
	// One context for some fifty keep invocations, each a process of its
	// own (race-built under -race) while other test packages load both
	// cores: ctxT's minute was seen to run out (65 s).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := n.RootClient(t)

	// keep identity HSM-KEY computes the root API key the banner printed.
	if out := cliOK(t, nil, "identity", hsmKey); !strings.Contains(out, n.APIKey) {
		t.Errorf("keep identity HSM-KEY: %q, want it to contain the banner's root API key %s", out, n.APIKey)
	}

	root := []string{"MINIO_KMS_SERVER=https://" + n.Addr, "MINIO_KMS_API_KEY=" + n.APIKey}

	// Without -k the self-signed certificate is not trusted.
	cliFails(t, root, 1, nil, "ls-key")

	cliOK(t, root, "add-enclave", "cli", "-k")
	_, err := c.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: "cli"})
	noErr(t, err, "enclave made by keep add-enclave")
	cliFails(t, root, 1, []string{"enclave already exists"}, "add-enclave", "cli", "-k")

	cliOK(t, root, "add-key", "k1", "-e", "cli", "-k")
	cliOK(t, root, "add-key", "k2", "-e", "cli", "--type", "ChaCha20", "-k")
	cliOK(t, root, "add-key", "k1", "-e", "cli", "--version", "-k")
	material := randBytes(t, 32)
	cliOK(t, root, "add-key", "imp", "-e", "cli", "--import", base64.StdEncoding.EncodeToString(material), "-k")
	cliOK(t, root, "add-key", "in-default", "-k")
	cliFails(t, root, 1, []string{"key already exists"}, "add-key", "k2", "-e", "cli", "-k")

	type keyJSON struct {
		Name    string `json:"name"`
		Version int    `json:"version"`
		Type    string `json:"type"`
	}
	var ls []keyJSON
	cliJSON(t, root, &ls, "ls-key", "-e", "cli", "-k")
	want := []keyJSON{{"imp", 1, "AES256"}, {"k1", 2, "AES256"}, {"k2", 1, "ChaCha20"}}
	if len(ls) != len(want) {
		t.Errorf("keep ls-key --json: %+v, want %+v", ls, want)
	} else {
		for i := range want {
			if ls[i] != want[i] {
				t.Errorf("keep ls-key --json [%d]: %+v, want %+v", i, ls[i], want[i])
			}
		}
	}
	text := cliOK(t, root, "ls-key", "k", "-e", "cli", "-k")
	if !strings.Contains(text, "k1") || !strings.Contains(text, "k2") || strings.Contains(text, "imp") {
		t.Errorf("keep ls-key k: %q, want k1 and k2 but not imp", text)
	}
	text = cliOK(t, root, "ls-key", "-k")
	if !strings.Contains(text, "in-default") {
		t.Errorf("keep ls-key (default enclave): %q, want in-default", text)
	}

	var st keyJSON
	cliJSON(t, root, &st, "stat-key", "k1", "-e", "cli", "-k")
	if st != (keyJSON{"k1", 2, "AES256"}) {
		t.Errorf("keep stat-key k1 --json: %+v", st)
	}
	text = cliOK(t, root, "stat-key", "k2", "-e", "cli", "-k")
	if !strings.Contains(text, "ChaCha20") {
		t.Errorf("keep stat-key k2: %q, want ChaCha20", text)
	}
	cliFails(t, root, 1, []string{"key does not exist"}, "stat-key", "nope", "-e", "cli", "-k")

	// keygen then decrypt round-trips, for every key and version.
	ctRE := regexp.MustCompile(`v(\d+):[A-Za-z0-9+/=]+`)
	for _, tc := range []struct {
		key     string
		version string
		wantV   string
	}{{"k1", "", "2"}, {"k1", "1", "1"}, {"k2", "", "1"}, {"imp", "", "1"}} {
		args := []string{"keygen", tc.key, "-e", "cli", "-k"}
		if tc.version != "" {
			args = append(args, "-v", tc.version)
		}
		out := cliOK(t, root, args...)
		m := ctRE.FindStringSubmatch(out)
		if m == nil || m[1] != tc.wantV {
			t.Errorf("keep %s: %q, want a ciphertext v%s:<base64>", strings.Join(args, " "), out, tc.wantV)
			continue
		}
		var plaintext string
		for _, f := range strings.Fields(out) {
			if b, err := base64.StdEncoding.DecodeString(f); err == nil && len(b) == 32 {
				plaintext = f
			}
		}
		if plaintext == "" {
			t.Errorf("keep keygen: no base64 plaintext of 32 bytes in %q", out)
		}
		dec := strings.TrimSpace(cliOK(t, root, "decrypt", tc.key, m[0], "-e", "cli", "-k"))
		if dec != plaintext {
			t.Errorf("keep decrypt %s %s: %q, want keygen's plaintext %q", tc.key, m[0], dec, plaintext)
		}
		// Without the v<N>: prefix the server reads the version itself.
		dec = strings.TrimSpace(cliOK(t, root, "decrypt", tc.key, strings.SplitN(m[0], ":", 2)[1], "-e", "cli", "-k"))
		if dec != plaintext {
			t.Errorf("keep decrypt without version prefix: %q, want %q", dec, plaintext)
		}
	}
	var dek struct {
		Version    int    `json:"version"`
		Plaintext  string `json:"plaintext"`
		Ciphertext string `json:"ciphertext"`
	}
	cliJSON(t, root, &dek, "keygen", "k2", "-e", "cli", "-k")
	if dec := strings.TrimSpace(cliOK(t, root, "decrypt", "k2", dek.Ciphertext, "-e", "cli", "-k")); dec != dek.Plaintext || dek.Version != 1 {
		t.Errorf("keep keygen --json / decrypt: %+v, decrypt %q", dek, dec)
	}
	cliFails(t, root, 1, []string{"invalid ciphertext"}, "decrypt", "k1", dek.Ciphertext, "-e", "cli", "-k")

	// The imported key material is the one in use: the same bytes imported
	// under another name decrypt keygen's ciphertext.
	cliJSON(t, root, &dek, "keygen", "imp", "-e", "cli", "-k")
	noErr(t, c.ImportKey(ctx, "cli", &kms.ImportKeyRequest{Name: "imp-copy", Type: kms.AES256, Key: material}), "ImportKey imp-copy")
	if dec := strings.TrimSpace(cliOK(t, root, "decrypt", "imp-copy", dek.Ciphertext, "-e", "cli", "-k")); dec != dek.Plaintext {
		t.Errorf("decrypt with the same imported material under another name: %q, want %q", dec, dek.Plaintext)
	}

	// Policies and a new identity.
	policyFile := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policyFile, []byte(`{
  "allow": {
    "KEY:GENERATE": "k*",
    "KEY:DECRYPT": ["k1", "k2"],
    "KEY:STATUS": {"k1": {}}
  },
  "deny": {
    "KEY:GENERATE": "k2"
  }
}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cliOK(t, root, "add-policy", "gen", policyFile, "-e", "cli", "-k")
	ps, err := c.GetPolicy(ctx, "cli", &kms.PolicyRequest{Name: "gen"})
	noErr(t, err, "GetPolicy of the policy made by add-policy")
	wantAllow := map[cmds.Command]kms.RuleSet{
		cmds.KeyGenerate: {"k*": {}},
		cmds.KeyDecrypt:  {"k1": {}, "k2": {}},
		cmds.KeyStatus:   {"k1": {}},
	}
	if !equalRules(ps[0].Allow, wantAllow) || !equalRules(ps[0].Deny, map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: {"k2": {}}}) {
		t.Errorf("policy from add-policy: allow %v deny %v", ps[0].Allow, ps[0].Deny)
	}

	out := cliOK(t, root, "add-identity", "-e", "cli", "-k")
	apiKey := regexp.MustCompile(`k[12]:[A-Za-z0-9_-]{40,}`).FindString(out)
	if apiKey == "" {
		t.Fatalf("keep add-identity: %q, want a new API key", out)
	}
	id := testnode.ParseAPIKey(t, apiKey).Identity().String()
	if !strings.Contains(out, id) {
		t.Errorf("keep add-identity: %q, want it to print the identity %s", out, id)
	}
	cliOK(t, root, "set-policy", "gen", id, "-e", "cli", "-k")

	user := []string{"MINIO_KMS_SERVER=https://" + n.Addr, "MINIO_KMS_API_KEY=" + apiKey}
	cliJSON(t, user, &dek, "keygen", "k1", "-e", "cli", "-k")
	if dec := strings.TrimSpace(cliOK(t, user, "decrypt", "k1", dek.Ciphertext, "-e", "cli", "-k")); dec != dek.Plaintext {
		t.Errorf("new identity: decrypt %q, want %q", dec, dek.Plaintext)
	}
	cliFails(t, user, 1, []string{"access denied"}, "keygen", "k2", "-e", "cli", "-k")
	cliFails(t, user, 1, []string{"access denied"}, "add-key", "k3", "-e", "cli", "-k")
	cliFails(t, user, 1, []string{"access denied"}, "keygen", "k1", "-k") // not its enclave

	type identityJSON struct {
		Identity  string `json:"identity"`
		Privilege string `json:"privilege"`
		Policy    string `json:"policy"`
	}
	var self identityJSON
	cliJSON(t, user, &self, "get-identity", "-e", "cli", "-k")
	if self != (identityJSON{id, "User", "gen"}) {
		t.Errorf("keep get-identity as the new identity: %+v, want %s User gen", self, id)
	}
	cliJSON(t, root, &self, "get-identity", "-k")
	if self.Identity != n.Root.Identity().String() || self.Privilege != "SysAdmin" {
		t.Errorf("keep get-identity as root: %+v", self)
	}
	text = cliOK(t, root, "get-identity", id, "-e", "cli", "-k")
	if !strings.Contains(text, id) || !strings.Contains(text, "gen") {
		t.Errorf("keep get-identity %s: %q", id, text)
	}

	// A wrong API key: one line, exit 1.
	stranger := []string{"MINIO_KMS_SERVER=https://" + n.Addr, "MINIO_KMS_API_KEY=" + testnode.NewAPIKey(t).String()}
	cliFails(t, stranger, 1, []string{"access denied"}, "ls-key", "-k")
	cliFails(t, stranger, 1, []string{"access denied"}, "add-enclave", "x", "-k")
	cliFails(t, []string{"MINIO_KMS_SERVER=https://" + n.Addr, "MINIO_KMS_API_KEY=k1:garbage"}, 1, nil, "ls-key", "-k")
	cliFails(t, []string{"MINIO_KMS_SERVER=https://" + n.Addr}, 1, []string{"MINIO_KMS_API_KEY"}, "ls-key", "-k")

	// Clean-up commands.
	cliOK(t, root, "rm-key", "k1", "-e", "cli", "-v", "1", "--window", "0s", "-k")
	_, err = c.KeyStatus(ctx, "cli", &kms.KeyStatusRequest{Name: "k1", Version: 1})
	errIs(t, err, kms.ErrKeyNotFound, "k1 v1 after keep rm-key -v 1")
	cliFails(t, root, 2, []string{"Delete every version of key k2", "add --yes"}, "rm-key", "k2", "-e", "cli", "--all", "-k")
	cliOK(t, root, "rm-key", "k2", "-e", "cli", "--all", "--yes", "--window", "0s", "-k")
	_, err = c.KeyStatus(ctx, "cli", &kms.KeyStatusRequest{Name: "k2"})
	errIs(t, err, kms.ErrKeyNotFound, "k2 after keep rm-key --all")
	cliOK(t, root, "rm-identity", id, "-e", "cli", "-k")
	cliFails(t, user, 1, []string{"access denied"}, "keygen", "k1", "-e", "cli", "-k")
	cliOK(t, root, "rm-policy", "gen", "-e", "cli", "-k")
	_, err = c.GetPolicy(ctx, "cli", &kms.PolicyRequest{Name: "gen"})
	errIs(t, err, kms.ErrPolicyNotFound, "policy after keep rm-policy")
	cliOK(t, root, "rm-enclave", "cli", "-k")
	_, err = c.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: "cli"})
	errIs(t, err, kms.ErrEnclaveNotFound, "enclave after keep rm-enclave")
}
