package server

import (
	"github.com/keep-kms/keep/internal/hsm"
)

// openPKCS11 opens the PKCS#11 HSM p configures, called name, logging in
// with pin. Its errors are hsm.OpenPKCS11's: one line, naming the module,
// token or key, never the PIN.
func openPKCS11(name string, p *PKCS11Config, pin string) (hsm.HSM, error) {
	c := p.hsmConfig(name)
	c.PIN = pin
	return hsm.OpenPKCS11(c)
}

// hsmConfig is p as the hsm package takes it, without the PIN.
func (p *PKCS11Config) hsmConfig(name string) hsm.PKCS11Config {
	return hsm.PKCS11Config{Name: name, Module: p.Module, Token: p.Token, Slot: p.Slot, Key: p.Key}
}
