package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/test/softhsm"
)

// TestPKCS11CLI runs keep --pkcs11 against a SoftHSM2 token: it creates the
// key objects, prints a config a node can use and the root API key the
// token derives, and refuses to create them twice.
func TestPKCS11CLI(t *testing.T) {
	tok := softhsm.NewToken(t, "e2e")
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rootKey := regexp.MustCompile(`(?m)^\s+API key:\s+(k1:\S+)$`)
	identity := regexp.MustCompile(`(?m)^\s+Identity:\s+(h1:\S+)$`)
	tests := []struct {
		name  string
		env   []string
		args  []string
		entry string // the pkcs11 entry of the YAML, as printed
	}{
		{
			name: "token, PIN from env",
			env:  append(tok.Env(), "KEEP_PKCS11_PIN="+tok.PIN),
			args: []string{"--token", "e2e", "--key", "root"},
			entry: "hsm:\n  - name: pkcs11:e2e/root\n    pkcs11:\n      module: " + tok.Module +
				"\n      token: e2e\n      key: root\n      pin_env: KEEP_PKCS11_PIN\n",
		},
		{
			name: "slot, PIN file",
			env:  tok.Env(),
			args: []string{"--slot", strconv.FormatUint(uint64(tok.Slot), 10), "--key", "next", "--pin-file", pinFile, "--name", "hsm-2"},
			entry: "hsm:\n  - name: hsm-2\n    pkcs11:\n      module: " + tok.Module +
				"\n      slot: " + strconv.FormatUint(uint64(tok.Slot), 10) + "\n      key: next\n      pin_file: " + pinFile + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--pkcs11", "--module", tok.Module}, tt.args...)
			stdout, stderr, code := runCLI(t, tt.env, args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			if stdout != tt.entry {
				t.Fatalf("stdout:\n%s\nwant:\n%s", stdout, tt.entry)
			}
			var parsed map[string]any
			if err := yaml.Unmarshal([]byte(stdout), &parsed); err != nil {
				t.Fatalf("stdout is not YAML: %v", err)
			}
			if strings.Contains(stdout+stderr, tok.PIN) {
				t.Fatal("the output holds the PIN")
			}

			// The printed root API key is the one the token derives, and
			// keep identity agrees with the printed identity.
			key, id := rootKey.FindStringSubmatch(stderr), identity.FindStringSubmatch(stderr)
			if key == nil || id == nil {
				t.Fatalf("stderr does not show the root API key and identity:\n%s", stderr)
			}
			keyLabel := tt.args[slices.Index(tt.args, "--key")+1]
			h, err := hsm.OpenPKCS11(hsm.PKCS11Config{Module: tok.Module, Token: tok.Label, Key: keyLabel, PIN: tok.PIN})
			if err != nil {
				t.Fatal(err)
			}
			root, err := hsm.RootAPIKey(context.Background(), h)
			h.Close()
			if err != nil || root.String() != key[1] || root.Identity().String() != id[1] {
				t.Fatalf("printed %s (%s), the token derives %v (%v)", key[1], id[1], root, err)
			}
			if out := cliOK(t, nil, "identity", key[1]); !strings.Contains(out, id[1]) {
				t.Fatalf("keep identity %s does not show %s:\n%s", key[1], id[1], out)
			}

			// A second run refuses, in one line, and changes nothing.
			cliFails(t, tt.env, 1, []string{"already holds 2 object(s) labelled " + strconv.Quote(keyLabel), "nothing created"}, args...)
			stdout2, stderr2, _ := runCLI(t, tt.env, args...)
			if stdout2 != "" || strings.Contains(stderr2, tok.PIN) {
				t.Fatalf("refused run printed %q / %q", stdout2, stderr2)
			}
			h, err = hsm.OpenPKCS11(hsm.PKCS11Config{Module: tok.Module, Token: tok.Label, Key: keyLabel, PIN: tok.PIN})
			if err != nil {
				t.Fatal(err)
			}
			again, err := hsm.RootAPIKey(context.Background(), h)
			h.Close()
			if err != nil || again.String() != root.String() {
				t.Fatalf("the key changed after a refused run: %v", err)
			}
		})
	}

	// Start-up errors of the binary: one line, exit 1, no PIN.
	cliFails(t, append(tok.Env(), "KEEP_PKCS11_PIN=0"+tok.PIN), 1, []string{`wrong PIN for PKCS#11 token "e2e"`},
		"--pkcs11", "--module", tok.Module, "--token", "e2e", "--key", "other")
	cliFails(t, append(tok.Env(), "KEEP_PKCS11_PIN="+tok.PIN), 1, []string{`PKCS#11 token "nosuch" not found`, `tokens present: "e2e"`},
		"--pkcs11", "--module", tok.Module, "--token", "nosuch", "--key", "other")
}
