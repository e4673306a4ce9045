package kesstore

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseConfig checks that no config file makes the parser panic, and
// that what it accepts is a usable fs keystore config.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("version: v1\nkeystore:\n  fs:\n    path: keystore\n"))
	f.Add([]byte("keystore:\n  fs:\n    path: ${KES_KEYSTORE}\n"))
	f.Add([]byte("keystore:\n  vault:\n    endpoint: https://127.0.0.1:8200\n"))
	env := func(name string) (string, bool) {
		if name == "KES_KEYSTORE" {
			return "/var/lib/kes", true
		}
		return "", false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, env)
		if err != nil {
			if c != nil {
				t.Fatalf("config %#v with error %v", c, err)
			}
			if errors.Is(err, ErrUnsupported) && !strings.Contains(err.Error(), "is not supported by keep import-kes yet") {
				t.Fatalf("unsupported keystore error %q does not say so", err)
			}
			return
		}
		fs, ok := c.Keystore.(*FSConfig)
		if !ok || fs.Path == "" {
			t.Fatalf("accepted config without an fs path: %#v", c.Keystore)
		}
	})
}
