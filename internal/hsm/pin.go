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

// maxPINFile bounds what ReadPINFile reads: PINs are short, and a large
// file is a mistake (a key file, a log) rather than a PIN.
const maxPINFile = 1024

// ReadPINFile returns the PIN in the file at path: its content without one
// trailing newline ("\n" or "\r\n"), as `echo PIN > file` writes it. An
// empty or oversized file is an error; errors name the path, never the
// content.
func ReadPINFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hsm: cannot read PIN file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPINFile+1))
	defer clear(b)
	if err != nil {
		return "", fmt.Errorf("hsm: cannot read PIN file %q: %w", path, err)
	}
	if len(b) > maxPINFile {
		return "", fmt.Errorf("hsm: PIN file %q is larger than %d bytes", path, maxPINFile)
	}
	pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pin == "" {
		return "", fmt.Errorf("hsm: PIN file %q is empty", path)
	}
	if strings.ContainsAny(pin, "\r\n") {
		return "", fmt.Errorf("hsm: PIN file %q has more than one line", path)
	}
	return pin, nil
}
