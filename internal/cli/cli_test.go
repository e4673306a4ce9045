package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// runCLI runs the keep command line with args and env as the whole
// environment and returns what it printed and its exit code.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{
		getenv: func(k string) string { return env[k] },
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errOut,
	}
	code = a.run(context.Background(), args)
	return out.String(), errOut.String(), code
}

// decodeJSON unmarshals s into a value of type T or fails the test.
func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not the expected JSON: %v\n%s", err, s)
	}
	return v
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		code    int
		message string // part of the one-line error, "" for success
	}{
		{name: "help", args: []string{"--help"}, code: ExitOK},
		{name: "no command", args: nil, code: ExitOK},
		{name: "unknown command", args: []string{"ls-keys"}, code: ExitUsage, message: `did you mean "ls-key"?`},
		{name: "unknown flag", args: []string{"ls-key", "--bogus"}, code: ExitUsage, message: "unknown flag: --bogus"},
		{name: "missing argument", args: []string{"add-key"}, code: ExitUsage, message: "usage: keep add-key NAME"},
		{name: "too many arguments", args: []string{"stat-key", "a", "b"}, code: ExitUsage, message: "too many arguments"},
		{name: "negative version", args: []string{"stat-key", "a", "-v", "-1"}, code: ExitUsage, message: "invalid argument"},
		{name: "exclusive flags", args: []string{"rm-key", "a", "-v", "2", "--all"}, code: ExitUsage, message: "--version and --all cannot be used together"},
		{name: "admin and sysadmin", args: []string{"add-identity", "--admin", "--sysadmin"}, code: ExitUsage, message: "--admin and --sysadmin"},
		{name: "bad key type", args: []string{"add-key", "a", "--type", "RSA"}, code: ExitUsage, message: "use AES256 or ChaCha20"},
		{name: "short import", args: []string{"add-key", "a", "--import", "AAAA"}, code: ExitUsage, message: "must be 32 bytes, got 3"},
		{name: "bad ciphertext", args: []string{"decrypt", "a", "x1:AAAA"}, code: ExitUsage, message: "invalid ciphertext"},
		{name: "bad tag", args: []string{"add-identity", "--tag", "novalue"}, code: ExitUsage, message: "expected KEY=VALUE"},
		{name: "API key as identity", args: []string{"rm-identity", "k1:AqwjUvaWEE9O83quGOkiO_2D1x37Za9gE4L5UHdq0Ag"}, code: ExitUsage, message: "an API key was given"},
		{name: "length too large", args: []string{"keygen", "a", "--length", "1025"}, code: ExitUsage, message: "at most 1024"},
		{name: "no API key", args: []string{"ls-key"}, code: ExitError, message: "no API key: set MINIO_KMS_API_KEY or pass --api-key"},
		{name: "server without dir", args: []string{"server"}, code: ExitUsage, message: "give a data directory (keep server DIR) or use --dev"},
		{name: "server without HSM key", args: []string{"server", t.TempDir()}, code: ExitError, message: "set MINIO_KMS_HSM_KEY"},
		{name: "add without host", args: []string{"add"}, code: ExitUsage, message: "usage: keep add HOST[:PORT]"},
		{name: "add with a bad host", args: []string{"add", "http://node1"}, code: ExitUsage, message: "the only scheme is https://"},
		{name: "rm with a bad port", args: []string{"rm", "node1:0"}, code: ExitUsage, message: "the port must be a number"},
		{name: "ls with an argument", args: []string{"ls", "x"}, code: ExitUsage, message: "too many arguments"},
		{name: "edit without --rm", args: []string{"edit", "node1"}, code: ExitUsage, message: "give the ID of a node to remove with --rm"},
		{name: "edit with a negative ID", args: []string{"edit", "node1", "--rm", "-1"}, code: ExitUsage, message: "invalid node ID -1"},
		{name: "restart with a bad host", args: []string{"restart", "node1", "a/b"}, code: ExitUsage, message: `invalid HOST[:PORT] "a/b"`},
		{name: "restore without file", args: []string{"restore"}, code: ExitUsage, message: "missing argument"},
		{name: "restore with too many arguments", args: []string{"restore", "a", "b", "c"}, code: ExitUsage, message: "too many arguments"},
		{name: "backup without API key", args: []string{"backup"}, code: ExitError, message: "no API key"},
		{name: "identity of a missing file", args: []string{"identity", "no-such-file"}, code: ExitUsage, message: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, tt.env, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tt.code, stderr)
			}
			if tt.message == "" {
				if stderr != "" {
					t.Errorf("unexpected stderr: %s", stderr)
				}
				return
			}
			if !strings.HasPrefix(stderr, "keep: ") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("error is not one line starting with 'keep: ': %q", stderr)
			}
			if !strings.Contains(stderr, tt.message) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.message)
			}
		})
	}
}

func TestSoftHSM(t *testing.T) {
	stdout, stderr, code := runCLI(t, nil, "", "--soft-hsm")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "hsm:aes256:") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("stdout is not one HSM key: %q", stdout)
	}
	for _, want := range []string{"only once", "root", "encryption key"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("warning does not mention %q: %s", want, stderr)
		}
	}
	again, _, _ := runCLI(t, nil, "", "--soft-hsm")
	if again == stdout {
		t.Error("two HSM keys are equal")
	}
}

func TestVersion(t *testing.T) {
	stdout, _, code := runCLI(t, nil, "", "version", "--json")
	if code != ExitOK {
		t.Fatalf("exit code %d", code)
	}
	v := decodeJSON[versionJSON](t, stdout)
	if v.Version == "" || v.GoVersion == "" || v.Platform == "" || v.License != "AGPL-3.0-or-later" {
		t.Errorf("incomplete version: %+v", v)
	}
}
