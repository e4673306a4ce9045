// Package softhsm creates SoftHSM2 tokens for tests: each test gets its own
// SOFTHSM2_CONF and token directory in t.TempDir(), never the system's, so
// that tests can run in parallel processes and leave nothing behind.
package softhsm

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/keep-kms/keep/test/aptget"
)

// moduleDirs are where Debian, Ubuntu, Fedora and Alpine put the module.
var moduleDirs = []string{
	"/usr/lib/softhsm",
	"/usr/lib/x86_64-linux-gnu/softhsm",
	"/usr/lib/aarch64-linux-gnu/softhsm",
	"/usr/lib64/softhsm",
	"/usr/lib64/pkcs11",
	"/usr/local/lib/softhsm",
}

// Module returns the path of libsofthsm2.so. If softhsm2-util is missing and
// the process runs as root, it installs the Debian package softhsm2 once per
// process (as CI does); otherwise it fails the test saying what to install.
func Module(t testing.TB) string {
	t.Helper()
	if err := aptget.Ensure("softhsm2-util", "softhsm2"); err != nil {
		t.Fatalf("softhsm: %v", err)
	}
	for _, dir := range moduleDirs {
		p := filepath.Join(dir, "libsofthsm2.so")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("softhsm: softhsm2-util is installed but libsofthsm2.so is in none of %s", strings.Join(moduleDirs, ", "))
	return ""
}

// Token is an initialized SoftHSM2 token, logged out, with no objects.
type Token struct {
	// Conf is the path of the SOFTHSM2_CONF file that holds the token; its
	// token directory lies beside it.
	Conf string
	// Label is the token's label, as --token takes it.
	Label string
	// PIN is the user PIN and SOPIN the security officer PIN, both random.
	PIN, SOPIN string
	// Module is the path of libsofthsm2.so.
	Module string
	// Slot is the slot ID SoftHSM gave the token, as --slot takes it.
	Slot uint

	t testing.TB
}

// NewToken creates a token labelled label in a new SOFTHSM2_CONF of its own
// and points the test process's SOFTHSM2_CONF at it (t.Setenv, so the test
// cannot be parallel). Child processes get it from Env.
func NewToken(t testing.TB, label string) *Token {
	t.Helper()
	module := Module(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := "directories.tokendir = " + tokens + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	return newToken(t, module, conf, label)
}

// NewToken creates another token labelled label beside tok, in the same
// SOFTHSM2_CONF, so that one process sees both.
func (tok *Token) NewToken(label string) *Token {
	tok.t.Helper()
	return newToken(tok.t, tok.Module, tok.Conf, label)
}

func newToken(t testing.TB, module, conf, label string) *Token {
	t.Helper()
	tok := &Token{Conf: conf, Label: label, PIN: randomPIN(t), SOPIN: randomPIN(t), Module: module, t: t}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", tok.PIN, "--so-pin", tok.SOPIN)
	cmd.Env = append(os.Environ(), tok.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token --label %q: %v\n%s", label, err, out)
	}
	m := reassigned.FindSubmatch(out)
	if m == nil {
		t.Fatalf("softhsm2-util --init-token --label %q did not say the token's slot:\n%s", label, out)
	}
	slot, err := strconv.ParseUint(string(m[1]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	tok.Slot = uint(slot)
	return tok
}

// reassigned matches what softhsm2-util --init-token --free says about the
// slot it gave the token.
var reassigned = regexp.MustCompile(`reassigned to slot ([0-9]+)`)

// Env returns the environment entries a child process needs to see the
// token: SOFTHSM2_CONF=….
func (tok *Token) Env() []string {
	return []string{"SOFTHSM2_CONF=" + tok.Conf}
}

// randomPIN returns 16 random hex digits, so that a test that prints a PIN
// by mistake can find it in any output.
func randomPIN(t testing.TB) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
