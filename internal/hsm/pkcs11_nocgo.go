//go:build !cgo

package hsm

import (
	"context"
	"errors"

	"aead.dev/mtls"
)

// PKCS11Available reports whether this binary can load PKCS#11 modules:
// not without cgo.
const PKCS11Available = false

// PKCS11 is the PKCS#11 HSM. This keep binary was built without cgo, which
// PKCS#11 modules (C libraries) need: OpenPKCS11 and CreatePKCS11Key fail
// with ErrModule, so that such a build still runs with soft HSMs.
type PKCS11 struct {
	name string
}

var _ HSM = (*PKCS11)(nil)

// OpenPKCS11 fails with ErrModule: the binary cannot load a module.
func OpenPKCS11(c PKCS11Config) (*PKCS11, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return nil, noCgo(c)
}

// CreatePKCS11Key fails with ErrModule: the binary cannot load a module.
func CreatePKCS11Key(c PKCS11Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return noCgo(c)
}

func noCgo(c PKCS11Config) error {
	return startErr(ErrModule, nil, "cannot load PKCS#11 module %q: this keep binary was built without cgo (CGO_ENABLED=0), which PKCS#11 needs", c.Module)
}

// errNoPKCS11 is what the methods of a PKCS11 return; OpenPKCS11 never
// returns one, so they are never reached.
var errNoPKCS11 = errors.New("hsm: PKCS#11 is not available in a keep built without cgo")

// Seal fails: see PKCS11.
func (p *PKCS11) Seal(context.Context, []byte) ([]byte, error) { return nil, errNoPKCS11 }

// Unseal fails: see PKCS11.
func (p *PKCS11) Unseal(context.Context, []byte) ([]byte, error) { return nil, errNoPKCS11 }

// PrivateKey fails: see PKCS11.
func (p *PKCS11) PrivateKey(context.Context, []byte) (mtls.PrivateKey, error) {
	return nil, errNoPKCS11
}

// Close does nothing.
func (p *PKCS11) Close() error { return nil }
