package e2e

import (
	"strings"
	"testing"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/softhsm"
	"github.com/keep-kms/keep/test/testnode"
)

// TestPKCS11StartFailures starts a node of a PKCS#11 token with each thing
// that can be wrong with its token: the node must refuse to start with one
// line that says what, exit non-zero and change nothing on disk, and never
// print the PIN.
func TestPKCS11StartFailures(t *testing.T) {
	tok := softhsm.NewToken(t, "fail")
	pinEnv := append(tok.Env(), "KEEP_PKCS11_PIN="+tok.PIN)
	for _, key := range []string{"root", "other"} {
		if _, stderr, code := runCLI(t, pinEnv, "--pkcs11", "--module", tok.Module, "--token", tok.Label, "--key", key); code != 0 {
			t.Fatalf("keep --pkcs11 --key %s: exit %d\n%s", key, code, stderr)
		}
	}
	env := func(module, token, key, pin string) []string {
		return append(tok.Env(), "KEEP_PKCS11_MODULE="+module, "KEEP_PKCS11_TOKEN="+token, "KEEP_PKCS11_KEY="+key, "KEEP_PKCS11_PIN="+pin)
	}
	n := testnode.New(t, testnode.Options{Name: "token", HSMKey: "-", ExtraEnv: env(tok.Module, tok.Label, "root", tok.PIN)})
	n.MustStart()
	noErr(t, n.RootClient(t).CreateKey(ctxT(t), "", &kms.CreateKeyRequest{Name: "k"}), "CreateKey")
	n.Stop()
	n.NoAPIKey = true

	for _, tt := range []struct {
		name string
		env  []string
		want string
	}{
		{"module not loadable", env("/nonexistent/libpkcs11.so", tok.Label, "root", tok.PIN), "/nonexistent/libpkcs11.so"},
		{"module not a PKCS#11 module", env("/bin/true", tok.Label, "root", tok.PIN), "/bin/true"},
		{"token not found", env(tok.Module, "missing", "root", tok.PIN), "missing"},
		{"wrong PIN", env(tok.Module, tok.Label, "root", tok.PIN+"x"), "PIN"},
		{"key missing", env(tok.Module, tok.Label, "absent", tok.PIN), "absent"},
		{"the token's key is not the cluster's", env(tok.Module, tok.Label, "other", tok.PIN), "none of this node's HSMs unseals the root encryption key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n.ExtraEnv = tt.env
			line := n.StartRefused(t, nil)
			if !strings.Contains(line, tt.want) {
				t.Errorf("refusal %q does not say %q", line, tt.want)
			}
			if strings.Contains(line, tok.PIN) {
				t.Errorf("refusal %q holds the PIN", line)
			}
		})
	}
	n.ExtraEnv = env(tok.Module, tok.Label, "root", tok.PIN)
	n.MustStart()
	if _, err := n.RootClient(t).KeyStatus(ctxT(t), "", &kms.KeyStatusRequest{Name: "k"}); err != nil {
		t.Fatalf("after the refused starts: %s", testnode.DescribeErr(err))
	}
}
