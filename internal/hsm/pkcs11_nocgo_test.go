//go:build !cgo

package hsm

import (
	"errors"
	"strings"
	"testing"
)

func TestPKCS11WithoutCgo(t *testing.T) {
	c := PKCS11Config{Module: "/usr/lib/softhsm/libsofthsm2.so", Token: "t", Key: "k", PIN: "1234"}
	if _, err := OpenPKCS11(c); !errors.Is(err, ErrModule) || !strings.Contains(err.Error(), "built without cgo") {
		t.Fatalf("OpenPKCS11 = %v, want ErrModule saying why", err)
	}
	if err := CreatePKCS11Key(c); !errors.Is(err, ErrModule) {
		t.Fatalf("CreatePKCS11Key = %v, want ErrModule", err)
	}
	c.PIN = ""
	if _, err := OpenPKCS11(c); err == nil || !strings.Contains(err.Error(), "empty PIN") {
		t.Fatalf("OpenPKCS11 = %v, want the config error first", err)
	}
}
