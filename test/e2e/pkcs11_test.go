//go:build cgo

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/minio/kms-go/kms"
	"go.yaml.in/yaml/v3"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/test/softhsm"
	"github.com/keep-kms/keep/test/testnode"
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
		entry string // the config printed: version and the pkcs11 entry
	}{
		{
			name: "token, PIN from env",
			env:  append(tok.Env(), "KEEP_PKCS11_PIN="+tok.PIN),
			args: []string{"--token", "e2e", "--key", "root"},
			entry: "version: v1\nhsm:\n  - name: pkcs11:e2e/root\n    pkcs11:\n      module: " + tok.Module +
				"\n      token: e2e\n      key: root\n      pin_env: KEEP_PKCS11_PIN\n",
		},
		{
			name: "slot, PIN file",
			env:  tok.Env(),
			args: []string{"--slot", strconv.FormatUint(uint64(tok.Slot), 10), "--key", "next", "--pin-file", pinFile, "--name", "hsm-2"},
			entry: "version: v1\nhsm:\n  - name: hsm-2\n    pkcs11:\n      module: " + tok.Module +
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

// TestPKCS11Node starts a node on the config keep --pkcs11 prints: the
// root API key is the one it printed, keys generated before a restart
// decrypt after it, and a wrong PIN stops the start in one line, without
// touching the data directory.
func TestPKCS11Node(t *testing.T) {
	tok := softhsm.NewToken(t, "node")
	pinEnv := append(tok.Env(), "KEEP_PKCS11_PIN="+tok.PIN)
	stdout, stderr, code := runCLI(t, pinEnv, "--pkcs11", "--module", tok.Module, "--token", "node", "--key", "root")
	if code != 0 {
		t.Fatalf("keep --pkcs11: exit %d\n%s", code, stderr)
	}
	printed := regexp.MustCompile(`(?m)^\s+API key:\s+(k1:\S+)$`).FindStringSubmatch(stderr)
	if printed == nil {
		t.Fatalf("keep --pkcs11 printed no root API key:\n%s", stderr)
	}

	n := testnode.New(t, testnode.Options{HSMKey: "-", Config: writeConfigFile(t, stdout), ExtraEnv: pinEnv})
	n.MustStart()
	if n.APIKey != printed[1] {
		t.Fatalf("the node's root API key %s is not the one keep --pkcs11 printed, %s", n.APIKey, printed[1])
	}
	if !strings.Contains(n.Banner, "pkcs11:node/root") {
		t.Errorf("the banner does not name the HSM:\n%s", n.Banner)
	}
	ctx := ctxT(t)
	c := n.RootClient(t)
	noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "app"}), "CreateKey")
	deks, err := c.GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: "app", AssociatedData: []byte("ctx")})
	noErr(t, err, "GenerateKey")
	dek := deks[0]

	n.NoAPIKey = true // a restart's banner shows no key; it stays printed[1]
	n.Restart()
	got, err := n.RootClient(t).Decrypt(ctx, "", &kms.DecryptRequest{Name: "app", Ciphertext: dek.Ciphertext, AssociatedData: []byte("ctx")})
	noErr(t, err, "Decrypt after restart")
	if !bytes.Equal(got[0].Plaintext, dek.Plaintext) {
		t.Fatal("the data key decrypts to another plaintext after a restart")
	}

	// A wrong PIN: one line naming the token, a non-zero exit, no change
	// on disk, and the PIN in no output.
	n.Stop()
	before := dirDigest(t, n.Dir)
	n.ExtraEnv = append(tok.Env(), "KEEP_PKCS11_PIN=0"+tok.PIN)
	err = n.Start()
	var se *testnode.StartError
	if !errors.As(err, &se) || se.Code <= 0 {
		t.Fatalf("start with a wrong PIN: %v", err)
	}
	msg := strings.TrimSpace(se.Stderr)
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, `wrong PIN for PKCS#11 token "node"`) {
		t.Errorf("start with a wrong PIN: stderr %q, want one line about the PIN", se.Stderr)
	}
	if after := dirDigest(t, n.Dir); after != before {
		t.Error("a start with a wrong PIN changed the data directory")
	}
	for _, out := range []string{se.Stdout, se.Stderr, n.Stdout(), n.Stderr()} {
		if strings.Contains(out, tok.PIN) {
			t.Fatal("a node printed the PIN")
		}
	}
	noPINOnDisk(t, n.Dir, tok.PIN)
}

// dirDigest is a SHA-256 over the names, sizes and contents of every file
// under dir.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", path, len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// noPINOnDisk fails if any file under dir holds pin.
func noPINOnDisk(t *testing.T, dir, pin string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil && bytes.Contains(data, []byte(pin)) {
			t.Errorf("%s holds the PIN", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
