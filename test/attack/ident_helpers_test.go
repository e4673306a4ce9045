package attack

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kes"
	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// identHex spells an h1: identity as KES does: the SHA-256 in lowercase hex.
func identHex(id mtls.Identity) kes.Identity {
	b, _ := id.MarshalBinary() // "h1:" and the 32 bytes
	return kes.Identity(hex.EncodeToString(b[3:]))
}

// identStatus is the HTTP status of an error of either client; 200 for
// nil, 0 for an error that carries none (a timeout).
func identStatus(err error) int {
	if err == nil {
		return 200
	}
	var ke kes.Error
	if errors.As(err, &ke) {
		return ke.Status()
	}
	return testnode.StatusOf(err)
}

func identCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func identNoErr(t testing.TB, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %s", fmt.Sprintf(format, args...), testnode.DescribeErr(err))
	}
}

// identPrivilege maps the names of docs/identities.md to privileges.
var identPrivilege = map[string]kms.Privilege{"SysAdmin": kms.SysAdmin, "Admin": kms.Admin, "User": kms.User}
