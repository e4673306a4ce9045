package hsm

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// EnvPKCS11PIN is the environment variable `keep --pkcs11` reads the
// PKCS#11 user PIN from, and the pin_env it prints in the config.
const EnvPKCS11PIN = "KEEP_PKCS11_PIN"

// maxPINFile bounds what readSecretFile reads: PINs and soft HSM keys are
// short, and a large file is a mistake (a key file, a log) rather than one.
const maxPINFile = 1024

// ReadPINFile returns the PIN in the file at path: its content without one
// trailing newline ("\n" or "\r\n"), as `echo PIN > file` writes it. An
// empty or oversized file is an error; errors name the path, never the
// content.
func ReadPINFile(path string) (string, error) { return readSecretFile(path, "PIN") }

// ReadSoftKeyFile returns the soft HSM whose key (hsm:aes256:…) is in the
// file at path, read as ReadPINFile reads a PIN, so that the output of
// `keep --soft-hsm > file` and a systemd credential (LoadCredential=) or a
// mounted Kubernetes Secret work alike. Errors name the path, never the
// content.
func ReadSoftKeyFile(path string) (*Soft, error) {
	key, err := readSecretFile(path, "soft HSM key")
	if err != nil {
		return nil, err
	}
	s, err := ParseSoftKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w (in %q)", err, path)
	}
	return s, nil
}

// readSecretFile returns the one-line secret in the file at path, without
// one trailing newline; what names the secret in errors, which name the
// path, never the content.
func readSecretFile(path, what string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hsm: cannot read %s file: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPINFile+1))
	defer clear(b)
	if err != nil {
		return "", fmt.Errorf("hsm: cannot read %s file %q: %w", what, path, err)
	}
	if len(b) > maxPINFile {
		return "", fmt.Errorf("hsm: %s file %q is larger than %d bytes", what, path, maxPINFile)
	}
	secret := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if secret == "" {
		return "", fmt.Errorf("hsm: %s file %q is empty", what, path)
	}
	if strings.ContainsAny(secret, "\r\n") {
		return "", fmt.Errorf("hsm: %s file %q has more than one line", what, path)
	}
	return secret, nil
}
