// Package attack tries Keep's trust boundary as an attacker would: it builds
// the keep binary, starts real nodes over real TLS on 127.0.0.x (through
// test/testnode) and sends what a hostile or careless party could send:
// forged certificate chains, escalating identity changes, slow and large
// bodies, amplifying batches, tampered backups and data directories. Every
// test here failed on the code before the fix it guards; the closing note of
// the change that added it says how.
//
// Set KEEP_BINARY to test a prebuilt binary instead of building ./cmd/keep.
package attack

import (
	"os"
	"testing"

	"github.com/keep-kms/keep/test/testnode"
)

func TestMain(m *testing.M) { os.Exit(testnode.Main(m)) }
