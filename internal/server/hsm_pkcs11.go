package server

import (
	"github.com/keep-kms/keep/internal/hsm"
)

// openPKCS11 opens the PKCS#11 HSM p configures, called name, logging in
// with pin. Its errors are hsm.OpenPKCS11's: one line, naming the module,
// token or key, never the PIN.
func openPKCS11(name string, p *PKCS11Config, pin string) (hsm.HSM, error) {
	return hsm.OpenPKCS11(hsm.PKCS11Config{
		Name:   name,
		Module: p.Module,
		Token:  p.Token,
		Slot:   p.Slot,
		Key:    p.Key,
		PIN:    pin,
	})
}
