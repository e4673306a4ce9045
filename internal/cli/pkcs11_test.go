//go:build cgo

package cli

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/test/softhsm"
)

// pkcs11Out is what the YAML of keep --pkcs11 holds.
type pkcs11Out struct {
	HSM []struct {
		Name   string `yaml:"name"`
		PKCS11 struct {
			Module  string `yaml:"module"`
			Token   string `yaml:"token"`
			Slot    *uint  `yaml:"slot"`
			Key     string `yaml:"key"`
			PINEnv  string `yaml:"pin_env"`
			PINFile string `yaml:"pin_file"`
		} `yaml:"pkcs11"`
	} `yaml:"hsm"`
}

func TestPKCS11Create(t *testing.T) {
	tok := softhsm.NewToken(t, "cli")
	slot := tok.Slot
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{hsm.EnvPKCS11PIN: tok.PIN}
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantName string
		bySlot   bool
		pinFile  string
	}{
		{name: "token and env PIN", env: env, args: []string{"--token", "cli", "--key", "k1"}, wantName: "pkcs11:cli/k1"},
		{name: "slot, PIN file, name", args: []string{"--slot", strconv.FormatUint(uint64(slot), 10), "--key", "k2", "--pin-file", pinFile, "--name", "rack-1"},
			wantName: "rack-1", bySlot: true, pinFile: pinFile},
		{name: "PIN file wins over env", env: map[string]string{hsm.EnvPKCS11PIN: "wrong"}, args: []string{"--token", "cli", "--key", "k3", "--pin-file", pinFile},
			wantName: "pkcs11:cli/k3", pinFile: pinFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--pkcs11", "--module", tok.Module}, tt.args...)
			stdout, stderr, code := runCLI(t, tt.env, "", args...)
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var out pkcs11Out
			if err := yaml.Unmarshal([]byte(stdout), &out); err != nil || len(out.HSM) != 1 {
				t.Fatalf("stdout is not one HSM entry: %v\n%s", err, stdout)
			}
			e := out.HSM[0]
			key := tt.args[slices.Index(tt.args, "--key")+1]
			if e.Name != tt.wantName || e.PKCS11.Module != tok.Module || e.PKCS11.Key != key {
				t.Errorf("config %+v", e)
			}
			if tt.bySlot {
				if e.PKCS11.Slot == nil || *e.PKCS11.Slot != slot || e.PKCS11.Token != "" {
					t.Errorf("config names slot %v, token %q; want slot %d", e.PKCS11.Slot, e.PKCS11.Token, slot)
				}
			} else if e.PKCS11.Token != "cli" || e.PKCS11.Slot != nil {
				t.Errorf("config names token %q, slot %v; want token cli", e.PKCS11.Token, e.PKCS11.Slot)
			}
			if tt.pinFile != "" {
				if e.PKCS11.PINFile != tt.pinFile || e.PKCS11.PINEnv != "" {
					t.Errorf("config PIN from env %q, file %q; want file %q", e.PKCS11.PINEnv, e.PKCS11.PINFile, tt.pinFile)
				}
			} else if e.PKCS11.PINEnv != "KEEP_PKCS11_PIN" || e.PKCS11.PINFile != "" {
				t.Errorf("config PIN from env %q, file %q; want env KEEP_PKCS11_PIN", e.PKCS11.PINEnv, e.PKCS11.PINFile)
			}

			// stderr shows the root API key the token derives and its
			// identity; the PIN is nowhere.
			h, err := hsm.OpenPKCS11(hsm.PKCS11Config{Module: tok.Module, Token: "cli", Key: key, PIN: tok.PIN})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			root, err := hsm.RootAPIKey(context.Background(), h)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{root.String(), root.Identity().String(), "only once", "store it safely", "Every node of the cluster"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr)
				}
			}
			if strings.Contains(stdout+stderr, tok.PIN) || strings.Contains(stdout, root.String()) {
				t.Error("the PIN or the root API key is in the output where it must not be")
			}
		})
	}
}

func TestPKCS11CreateErrors(t *testing.T) {
	tok := softhsm.NewToken(t, "errs")
	env := map[string]string{hsm.EnvPKCS11PIN: tok.PIN}
	if _, stderr, code := runCLI(t, env, "", "--pkcs11", "--module", tok.Module, "--token", "errs", "--key", "taken"); code != ExitOK {
		t.Fatal(stderr)
	}
	h, err := hsm.OpenPKCS11(hsm.PKCS11Config{Module: tok.Module, Token: "errs", Key: "taken", PIN: tok.PIN})
	if err != nil {
		t.Fatal(err)
	}
	before, err := hsm.RootAPIKey(context.Background(), h)
	h.Close()
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"--pkcs11", "--module", tok.Module}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		code    int
		message string
	}{
		{"key exists", env, append(base, "--token", "errs", "--key", "taken"), ExitError, `token "errs" already holds 2 object(s) labelled "taken"; nothing created`},
		{"wrong PIN", map[string]string{hsm.EnvPKCS11PIN: "0" + tok.PIN}, append(base, "--token", "errs", "--key", "new"), ExitError, `wrong PIN for PKCS#11 token "errs"`},
		{"token not found", env, append(base, "--token", "nosuch", "--key", "new"), ExitError, `token "nosuch" not found`},
		{"module missing", env, []string{"--pkcs11", "--module", "/nonexistent.so", "--token", "errs", "--key", "new"}, ExitError, `cannot load PKCS#11 module "/nonexistent.so"`},
		{"PIN file missing", nil, append(base, "--token", "errs", "--key", "new", "--pin-file", "/nonexistent-pin"), ExitError, "cannot read PIN file"},
		{"no PIN", nil, append(base, "--token", "errs", "--key", "new"), ExitUsage, "no PIN: set KEEP_PKCS11_PIN or use --pin-file"},
		{"no module", env, []string{"--pkcs11", "--token", "errs", "--key", "new"}, ExitUsage, "--module PATH"},
		{"no key", env, append(base, "--token", "errs"), ExitUsage, "--key LABEL"},
		{"no token", env, append(base, "--key", "new"), ExitUsage, "--token LABEL or --slot ID"},
		{"name with a space", env, append(base, "--token", "errs", "--key", "new", "--name", "rack 1"), ExitUsage, `HSM name "rack 1": only printable characters without spaces`},
		{"token label with a space", env, append(base, "--token", "my token", "--key", "new"), ExitUsage, `HSM name "pkcs11:my token/new"`},
		{"token and slot", env, append(base, "--token", "errs", "--slot", "1", "--key", "new"), ExitUsage, "--token and --slot cannot be used together"},
		{"with --soft-hsm", env, append(base, "--token", "errs", "--key", "new", "--soft-hsm"), ExitUsage, "--pkcs11 and --soft-hsm"},
		{"flag without --pkcs11", env, []string{"--module", tok.Module}, ExitUsage, "--module is a flag of --pkcs11"},
		{"slot without --pkcs11", env, []string{"--soft-hsm", "--slot", "1"}, ExitUsage, "--slot is a flag of --pkcs11"},
		{"PIN as a flag", env, append(base, "--token", "errs", "--key", "new", "--pin", tok.PIN), ExitUsage, "unknown flag: --pin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tt.env, "", tt.args...)
			if code != tt.code || stdout != "" {
				t.Fatalf("exit %d, stdout %q; want exit %d and no output", code, stdout, tt.code)
			}
			msg := strings.TrimSuffix(stderr, "\n")
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tt.message) {
				t.Fatalf("stderr %q, want one line containing %q", stderr, tt.message)
			}
			if strings.Contains(msg, tok.PIN) {
				t.Fatalf("stderr %q holds the PIN", msg)
			}
		})
	}
	// Nothing was created or changed: the key is the same, "new" is absent.
	h, err = hsm.OpenPKCS11(hsm.PKCS11Config{Module: tok.Module, Token: "errs", Key: "taken", PIN: tok.PIN})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if after, err := hsm.RootAPIKey(context.Background(), h); err != nil || after.String() != before.String() {
		t.Fatalf("the existing key changed: %v", err)
	}
	if _, err := hsm.OpenPKCS11(hsm.PKCS11Config{Module: tok.Module, Token: "errs", Key: "new", PIN: tok.PIN}); err == nil {
		t.Fatal(`a refused command created the key "new"`)
	}
}
