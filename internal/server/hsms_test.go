package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/hsm"
)

// TestSoftKeyFile checks that a soft HSM key comes from a file as it comes
// from the environment (the same HSM, named alike), through the config
// file's key_file and through MINIO_KMS_HSM_KEY_FILE, and that errors name
// the file but never its content.
func TestSoftKeyFile(t *testing.T) {
	key, err := hsm.GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := hsm.GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile := write("hsm-key", key+"\n") // as `keep --soft-hsm > hsm-key` writes it
	badFile := write("bad-key", "hsm:aes256:notbase64\n")
	missing := filepath.Join(dir, "missing")

	soft := func(c SoftConfig) *Config { return &Config{HSM: []HSMConfig{{Soft: &c}}} }
	tests := []struct {
		name    string
		conf    *Config
		env     map[string]string
		wantErr string // "" = opens the HSM of key
	}{
		{name: "env", env: map[string]string{EnvSoftHSMKey: key}},
		{name: "env file", env: map[string]string{EnvSoftHSMKeyFile: keyFile}},
		{name: "env both", env: map[string]string{EnvSoftHSMKey: key, EnvSoftHSMKeyFile: keyFile}, wantErr: "not both"},
		{name: "env file missing", env: map[string]string{EnvSoftHSMKeyFile: missing}, wantErr: missing},
		{name: "env file invalid", env: map[string]string{EnvSoftHSMKeyFile: badFile}, wantErr: badFile},
		{name: "config key_file", conf: soft(SoftConfig{KeyFile: keyFile})},
		{name: "config key_file beats env", conf: soft(SoftConfig{KeyFile: keyFile}), env: map[string]string{EnvSoftHSMKey: other}},
		{name: "config key_env", conf: soft(SoftConfig{KeyEnv: "MY_KEY"}), env: map[string]string{"MY_KEY": key}},
		{name: "config both", conf: soft(SoftConfig{KeyEnv: "MY_KEY", KeyFile: keyFile}), wantErr: "exactly one of key_env and key_file"},
		{name: "config neither", conf: soft(SoftConfig{}), wantErr: "exactly one of key_env and key_file"},
	}
	want, err := hsm.ParseSoftKey(key)
	if err != nil {
		t.Fatal(err)
	}
	wantID := rootIdentity(t, want)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(name string) string { return tt.env[name] }
			if tt.conf != nil {
				if err := checkHSMs(tt.conf.HSM); err != nil {
					if tt.wantErr == "" || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("checkHSMs: %v, want error containing %q", err, tt.wantErr)
					}
					return
				}
			}
			ring, err := openHSMs(tt.conf, getenv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("openHSMs: %v, want error containing %q", err, tt.wantErr)
				}
				for _, secret := range []string{key, "notbase64"} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("error %q holds the key", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("openHSMs: %v", err)
			}
			defer ring.Close()
			hsms := ring.HSMs()
			if len(hsms) != 1 || hsms[0].Name() != hsm.LegacyName {
				t.Fatalf("HSMs %v, want one named %s", ring.Names(), hsm.LegacyName)
			}
			if got := rootIdentity(t, hsms[0]); got != wantID {
				t.Fatalf("HSM derives the identity %s, want %s: not the key of the file", got, wantID)
			}
		})
	}
}

// rootIdentity is a key h derives, to tell HSMs apart by their key.
func rootIdentity(t *testing.T, h hsm.HSM) string {
	t.Helper()
	k, err := h.PrivateKey(context.Background(), []byte("test"))
	if err != nil {
		t.Fatal(err)
	}
	return k.Identity().String()
}
