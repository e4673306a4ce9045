//go:build cgo

package hsm

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/test/softhsm"
)

// p11Conf is the config of key on tok.
func p11Conf(tok *softhsm.Token, key string) PKCS11Config {
	return PKCS11Config{Module: tok.Module, Token: tok.Label, Key: key, PIN: tok.PIN}
}

// createKey creates the key objects of c or fails the test.
func createKey(tb testing.TB, c PKCS11Config) {
	tb.Helper()
	if err := CreatePKCS11Key(c); err != nil {
		tb.Fatalf("CreatePKCS11Key: %v", err)
	}
}

// openP11 opens c, closed when the test ends, or fails the test.
func openP11(tb testing.TB, c PKCS11Config) *PKCS11 {
	tb.Helper()
	p, err := OpenPKCS11(c)
	if err != nil {
		tb.Fatalf("OpenPKCS11: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return p
}

// newP11 creates a token labelled label with a key "k" and opens it.
func newP11(tb testing.TB, label string) (*softhsm.Token, *PKCS11) {
	tb.Helper()
	tok := softhsm.NewToken(tb, label)
	c := p11Conf(tok, "k")
	createKey(tb, c)
	return tok, openP11(tb, c)
}

// withSession runs f on a logged-in read-write session of c's token, for
// tests that put objects on a token that CreatePKCS11Key would not.
func withSession(t *testing.T, c PKCS11Config, f func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle)) {
	t.Helper()
	s := &p11Session{conf: c}
	if err := loadModule(s); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if err := s.login(pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION); err != nil {
		t.Fatal(err)
	}
	f(s.mod.ctx, s.sh)
}

// assertDecryptErr fails unless err is exactly crypto.ErrDecrypt.
func assertDecryptErr(t *testing.T, plaintext []byte, err error) {
	t.Helper()
	if plaintext != nil || !errors.Is(err, crypto.ErrDecrypt) || err.Error() != "invalid ciphertext" {
		t.Fatalf("Unseal = %q, %v; want nil, invalid ciphertext", plaintext, err)
	}
}

func TestPKCS11SealUnseal(t *testing.T) {
	_, p := newP11(t, "seal")
	ctx := context.Background()
	for _, plaintext := range [][]byte{{}, []byte("root encryption key"), bytes.Repeat([]byte{0xA5}, 4096)} {
		sealed, err := p.Seal(ctx, plaintext)
		if err != nil {
			t.Fatal(err)
		}
		if want := 1 + 12 + len(plaintext) + 16; len(sealed) != want || sealed[0] != 1 {
			t.Fatalf("sealed %d bytes into %d bytes starting %#x; want %d starting 0x1", len(plaintext), len(sealed), sealed[0], want)
		}
		again, err := p.Seal(ctx, plaintext)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(sealed[1:13], again[1:13]) {
			t.Fatal("two seals used the same IV")
		}
		got, err := p.Unseal(ctx, sealed)
		if err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("Unseal = %x, %v; want %x", got, err, plaintext)
		}
	}
}

func TestPKCS11UnsealRefuses(t *testing.T) {
	// The same label on a second token, and a second key on the same
	// token. SoftHSM lists the tokens when the module is initialized, so
	// both tokens exist before the first open.
	tok := softhsm.NewToken(t, "one")
	other := tok.NewToken("two")
	for _, c := range []PKCS11Config{p11Conf(tok, "k"), p11Conf(tok, "k2"), p11Conf(other, "k")} {
		createKey(t, c)
	}
	p := openP11(t, p11Conf(tok, "k"))
	otherToken := openP11(t, p11Conf(other, "k"))
	otherKey := openP11(t, p11Conf(tok, "k2"))
	ctx := context.Background()
	sealed, err := p.Seal(ctx, []byte("root encryption key"))
	if err != nil {
		t.Fatal(err)
	}
	soft := mustParse(t, testSoftKey)
	softSealed, err := soft.Seal(ctx, []byte("root encryption key"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name       string
		hsm        *PKCS11
		ciphertext []byte
	}{
		{"other token", otherToken, sealed},
		{"other key on the token", otherKey, sealed},
		{"empty", p, nil},
		{"format byte only", p, []byte{1}},
		{"format 0", p, append([]byte{0}, sealed[1:]...)},
		{"format 2", p, append([]byte{2}, sealed[1:]...)},
		{"shorter than IV and tag", p, sealed[:1+12+15]},
		{"IV and tag only", p, append(bytes.Clone(sealed[:1+12]), sealed[len(sealed)-16:]...)},
		{"truncated", p, sealed[:len(sealed)-1]},
		{"appended byte", p, append(bytes.Clone(sealed), 0)},
		{"flipped IV", p, flip(1)},
		{"flipped ciphertext", p, flip(13)},
		{"flipped tag", p, flip(len(sealed) - 1)},
		{"soft HSM ciphertext", p, softSealed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.hsm.Unseal(ctx, tt.ciphertext)
			assertDecryptErr(t, got, err)
		})
	}
	// The failures left no operation active: the session still works.
	if got, err := p.Unseal(ctx, sealed); err != nil || string(got) != "root encryption key" {
		t.Fatalf("Unseal after failures = %q, %v", got, err)
	}
}

func TestPKCS11PrivateKey(t *testing.T) {
	tok := softhsm.NewToken(t, "derive")
	ctx := context.Background()
	c := p11Conf(tok, "k")
	createKey(t, c)
	derive := func(c PKCS11Config, seed string) string {
		t.Helper()
		p, err := OpenPKCS11(c)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		k, err := p.PrivateKey(ctx, []byte(seed))
		if err != nil {
			t.Fatal(err)
		}
		again, err := p.PrivateKey(ctx, []byte(seed))
		if err != nil {
			t.Fatal(err)
		}
		if k.String() != again.String() {
			t.Fatal("PrivateKey is not deterministic within one session")
		}
		return k.String()
	}
	first := derive(c, "keep/root-api-key")
	c2 := p11Conf(tok, "k2")
	createKey(t, c2)
	other := tok.NewToken("other")
	c3 := p11Conf(other, "k")
	createKey(t, c3)
	tests := []struct {
		name  string
		conf  PKCS11Config
		seed  string
		equal bool
	}{
		{"same key and seed, new open", c, "keep/root-api-key", true},
		{"same key and seed, by slot", bySlot(t, c), "keep/root-api-key", true},
		{"other seed", c, "keep/cluster-node", false},
		{"seed prefix", c, "keep/root-api-ke", false},
		{"other key on the token", c2, "keep/root-api-key", false},
		{"same label on another token", c3, "keep/root-api-key", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := derive(tt.conf, tt.seed); (got == first) != tt.equal {
				t.Fatalf("derived key equal to the first: %v, want %v", got == first, tt.equal)
			}
		})
	}
	// The soft HSM's derivation is another: no PKCS#11 key collides with it.
	soft, err := mustParse(t, testSoftKey).PrivateKey(ctx, []byte("keep/root-api-key"))
	if err != nil || soft.String() == first {
		t.Fatalf("soft key %v, %v", soft, err)
	}
}

// bySlot returns c naming its token by slot ID instead of label.
func bySlot(t *testing.T, c PKCS11Config) PKCS11Config {
	t.Helper()
	p := openP11(t, c)
	slot := p.s.slot
	c.Token, c.Slot = "", &slot
	return c
}

func TestPKCS11Name(t *testing.T) {
	slot := uint(7)
	tests := []struct {
		conf PKCS11Config
		want string
	}{
		{PKCS11Config{Token: "tok", Key: "k"}, "pkcs11:tok/k"},
		{PKCS11Config{Slot: &slot, Key: "root"}, "pkcs11:slot-7/root"},
		{PKCS11Config{Name: "hsm-2", Token: "tok", Key: "k"}, "pkcs11:tok/k"},
	}
	for _, tt := range tests {
		if got := tt.conf.DefaultName(); got != tt.want {
			t.Errorf("DefaultName() = %q, want %q", got, tt.want)
		}
	}

	tok := softhsm.NewToken(t, "named")
	c := p11Conf(tok, "k")
	createKey(t, c)
	c.Name = "rack-1"
	for _, tt := range []struct {
		name string
		conf PKCS11Config
		want string
	}{
		{"default", p11Conf(tok, "k"), "pkcs11:named/k"},
		{"given", c, "rack-1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := openP11(t, tt.conf)
			if p.Name() != tt.want {
				t.Fatalf("Name() = %q, want %q", p.Name(), tt.want)
			}
			// Printing shows the name only, never the PIN it holds.
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
				if got := fmt.Sprintf(verb, p); got != tt.want {
					t.Errorf("Sprintf(%q) = %q, want %q", verb, got, tt.want)
				}
				if got := fmt.Sprintf(verb, *p); strings.Contains(got, tok.PIN) {
					t.Errorf("Sprintf(%q) of the value shows the PIN", verb)
				}
				if got := fmt.Sprintf(verb, tt.conf); strings.Contains(got, tok.PIN) {
					t.Errorf("Sprintf(%q) of the config shows the PIN: %s", verb, got)
				}
			}
		})
	}
}

func TestPKCS11ConfigValidate(t *testing.T) {
	slot := uint(0)
	valid := PKCS11Config{Module: "/m.so", Token: "t", Key: "k", PIN: "1234"}
	with := func(f func(*PKCS11Config)) PKCS11Config {
		c := valid
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		conf    PKCS11Config
		wantErr string
	}{
		{"valid by label", valid, ""},
		{"valid by slot 0", with(func(c *PKCS11Config) { c.Token, c.Slot = "", &slot }), ""},
		{"label with a space, named", with(func(c *PKCS11Config) { c.Token, c.Name = "my token", "rack-1" }), ""},
		{"no module", with(func(c *PKCS11Config) { c.Module = "" }), "no module path"},
		{"no key", with(func(c *PKCS11Config) { c.Key = "" }), "no key label"},
		{"no token", with(func(c *PKCS11Config) { c.Token = "" }), "neither a token label nor a slot"},
		{"token and slot", with(func(c *PKCS11Config) { c.Slot = &slot }), "both a token label and a slot"},
		{"long label", with(func(c *PKCS11Config) { c.Token = strings.Repeat("t", 33) }), "token label is 33 bytes, at most 32"},
		{"no PIN", with(func(c *PKCS11Config) { c.PIN = "" }), "empty PIN"},
		{"label with a space, no name", with(func(c *PKCS11Config) { c.Token = "my token" }), `HSM name "pkcs11:my token/k": only printable characters without spaces; give the HSM another name`},
		{"name with a space", with(func(c *PKCS11Config) { c.Name = "rack 1" }), `HSM name "rack 1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.conf.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if _, err := OpenPKCS11(tt.conf); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("OpenPKCS11 = %v, want the Validate error", err)
			}
			if err := CreatePKCS11Key(tt.conf); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CreatePKCS11Key = %v, want the Validate error", err)
			}
		})
	}
}

func TestPKCS11StartErrors(t *testing.T) {
	tok := softhsm.NewToken(t, "start")
	good := p11Conf(tok, "k")
	createKey(t, good)
	// Objects with a label that are not Keep's key objects.
	genKey := func(label string, mech, keyType uint, size int, extractable bool) {
		withSession(t, good, func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) {
			attrs := []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
				pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, size),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, extractable),
				pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			}
			if _, err := ctx.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, attrs); err != nil {
				t.Fatal(err)
			}
		})
	}
	genKey("aes-only", pkcs11.CKM_AES_KEY_GEN, pkcs11.CKK_AES, 32, false)
	genKey("mac-only", pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKK_GENERIC_SECRET, 32, false)
	genKey("aes128", pkcs11.CKM_AES_KEY_GEN, pkcs11.CKK_AES, 16, false)
	genKey("aes128", pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKK_GENERIC_SECRET, 32, false)
	genKey("extractable", pkcs11.CKM_AES_KEY_GEN, pkcs11.CKK_AES, 32, true)
	genKey("extractable", pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKK_GENERIC_SECRET, 32, false)
	genKey("two-aes", pkcs11.CKM_AES_KEY_GEN, pkcs11.CKK_AES, 32, false)
	genKey("two-aes", pkcs11.CKM_AES_KEY_GEN, pkcs11.CKK_AES, 32, false)
	genKey("two-aes", pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKK_GENERIC_SECRET, 32, false)

	notModule := filepath.Join(t.TempDir(), "not-a-module.so")
	if err := os.WriteFile(notModule, []byte("not an ELF file"), 0o600); err != nil {
		t.Fatal(err)
	}
	noSlot := uint(4242)
	with := func(f func(*PKCS11Config)) PKCS11Config {
		c := good
		f(&c)
		return c
	}
	tests := []struct {
		name     string
		conf     PKCS11Config
		sentinel error
		contains []string
	}{
		{"module missing", with(func(c *PKCS11Config) { c.Module = "/nonexistent/libpkcs11.so" }), ErrModule,
			[]string{`"/nonexistent/libpkcs11.so"`, "no such file"}},
		{"module not a library", with(func(c *PKCS11Config) { c.Module = notModule }), ErrModule,
			[]string{notModule, "not an ELF shared library"}},
		{"module a directory", with(func(c *PKCS11Config) { c.Module = t.TempDir() }), ErrModule,
			[]string{"is a directory"}},
		{"module a library but not PKCS#11", with(func(c *PKCS11Config) { c.Module = sharedLibrary(t) }), ErrModule,
			[]string{"exports no C_GetFunctionList: not a PKCS#11 module"}},
		{"module an executable", with(func(c *PKCS11Config) { c.Module = executable(t) }), ErrModule,
			[]string{"an ELF file of type ET_EXEC, not a shared library"}},
		{"token not found", with(func(c *PKCS11Config) { c.Token = "nosuch" }), ErrTokenNotFound,
			[]string{`token "nosuch" not found`, tok.Module, `tokens present: "start" (slot `}},
		{"slot not found", with(func(c *PKCS11Config) { c.Token, c.Slot = "", &noSlot }), ErrTokenNotFound,
			[]string{"slot 4242 not found", `"start"`}},
		{"wrong PIN", with(func(c *PKCS11Config) { c.PIN = "0000" + c.PIN }), ErrPIN,
			[]string{`wrong PIN for PKCS#11 token "start"`}},
		{"PIN too long", with(func(c *PKCS11Config) { c.PIN = strings.Repeat("9", 300) }), ErrPIN,
			[]string{"wrong PIN"}},
		{"key missing", with(func(c *PKCS11Config) { c.Key = "nosuch" }), ErrKeyNotFound,
			[]string{`key "nosuch" not found on PKCS#11 token "start"`, "no AES key"}},
		{"only the AES key", with(func(c *PKCS11Config) { c.Key = "aes-only" }), ErrKeyNotFound,
			[]string{`"aes-only"`, "no generic secret (HMAC) key"}},
		{"only the HMAC key", with(func(c *PKCS11Config) { c.Key = "mac-only" }), ErrKeyNotFound,
			[]string{`"mac-only"`, "no AES key"}},
		{"AES-128", with(func(c *PKCS11Config) { c.Key = "aes128" }), ErrKeyInvalid,
			[]string{`"aes128"`, "AES key is 16 bytes, want 32"}},
		{"extractable", with(func(c *PKCS11Config) { c.Key = "extractable" }), ErrKeyInvalid,
			[]string{"AES key is extractable"}},
		{"two AES keys", with(func(c *PKCS11Config) { c.Key = "two-aes" }), ErrKeyInvalid,
			[]string{"2 AES key objects"}},
	}
	sentinels := []error{ErrModule, ErrTokenNotFound, ErrPIN, ErrKeyNotFound, ErrKeyInvalid, ErrKeyExists}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := OpenPKCS11(tt.conf)
			if err == nil {
				p.Close()
				t.Fatal("OpenPKCS11 succeeded")
			}
			for _, s := range sentinels {
				if errors.Is(err, s) != (s == tt.sentinel) {
					t.Errorf("errors.Is(%q, %v) = %v", err, s, !(s == tt.sentinel))
				}
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || strings.Contains(msg, tok.PIN) || strings.Contains(msg, tt.conf.PIN) {
				t.Fatalf("error %q is not one line or holds the PIN", msg)
			}
			for _, s := range tt.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not contain %q", msg, s)
				}
			}
		})
	}
	// A failed open leaves the module usable and the token as it was.
	p := openP11(t, good)
	if _, err := p.PrivateKey(context.Background(), RootAPIKeySeed); err != nil {
		t.Fatal(err)
	}
}

// sharedLibrary returns the path of a shared library that is not a PKCS#11
// module: zlib or the C library.
func sharedLibrary(t *testing.T) string {
	for _, pattern := range []string{"/lib/*/libz.so.1", "/usr/lib/*/libz.so.1", "/lib*/libz.so.1", "/usr/lib*/libz.so.1", "/lib/*/libc.so.6", "/lib*/libc.so.6"} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return m[0]
		}
	}
	t.Fatal("found neither libz nor libc to load as a module")
	return ""
}

// executable returns the path of an ELF executable that is not position
// independent, so not loadable: the test binary if it is one, else skips.
func executable(t *testing.T) string {
	path, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		t.Skipf("the test binary is %v", f.Type)
	}
	return path
}

// countObjects returns how many objects on c's token have label.
func countObjects(t *testing.T, c PKCS11Config, label string) int {
	t.Helper()
	var n int
	withSession(t, c, func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		s := &p11Session{mod: &p11Module{ctx: ctx}, sh: sh}
		objs, err := s.find([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)})
		if err != nil {
			t.Fatal(err)
		}
		n = len(objs)
	})
	return n
}

func TestCreatePKCS11Key(t *testing.T) {
	tok := softhsm.NewToken(t, "create")
	c := p11Conf(tok, "k")
	createKey(t, c)
	if n := countObjects(t, c, "k"); n != 2 {
		t.Fatalf("%d objects labelled k, want 2", n)
	}
	// The objects are what the brief promises: sensitive, never extractable,
	// private token objects, each allowed only its own operations.
	withSession(t, c, func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		s := &p11Session{mod: &p11Module{ctx: ctx}, sh: sh}
		objs, err := s.find([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "k")})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			want := []uint{pkcs11.CKA_KEY_TYPE, pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE,
				pkcs11.CKA_NEVER_EXTRACTABLE, pkcs11.CKA_LOCAL, pkcs11.CKA_ENCRYPT, pkcs11.CKA_DECRYPT, pkcs11.CKA_SIGN,
				pkcs11.CKA_VERIFY, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP, pkcs11.CKA_DERIVE}
			template := make([]*pkcs11.Attribute, len(want))
			for i, a := range want {
				template[i] = pkcs11.NewAttribute(a, nil)
			}
			attrs, err := ctx.GetAttributeValue(sh, o, template)
			if err != nil {
				t.Fatal(err)
			}
			keyType, _ := ulong(attrs[0].Value)
			got := map[uint]bool{}
			for _, a := range attrs[1:] {
				got[a.Type] = isTrue(a.Value)
			}
			wantTrue := map[uint]bool{pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_SENSITIVE: true,
				pkcs11.CKA_NEVER_EXTRACTABLE: true, pkcs11.CKA_LOCAL: true}
			switch keyType {
			case pkcs11.CKK_AES:
				wantTrue[pkcs11.CKA_ENCRYPT], wantTrue[pkcs11.CKA_DECRYPT] = true, true
			case pkcs11.CKK_GENERIC_SECRET:
				wantTrue[pkcs11.CKA_SIGN], wantTrue[pkcs11.CKA_VERIFY] = true, true
			default:
				t.Fatalf("key of type %#x", keyType)
			}
			for a, v := range got {
				if v != wantTrue[a] {
					t.Errorf("key type %#x: attribute %#x = %v", keyType, a, v)
				}
			}
		}
	})

	// A data object with a label blocks it as much as a key does.
	withSession(t, c, func(ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		_, err := ctx.CreateObject(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, "data"),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte("x")),
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	tests := []struct {
		label string
		count int
	}{{"k", 2}, {"data", 1}}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			err := CreatePKCS11Key(p11Conf(tok, tt.label))
			if !errors.Is(err, ErrKeyExists) || !strings.Contains(err.Error(), fmt.Sprintf("%q; nothing created", tt.label)) {
				t.Fatalf("CreatePKCS11Key = %v, want ErrKeyExists", err)
			}
			if n := countObjects(t, c, tt.label); n != tt.count {
				t.Fatalf("%d objects labelled %q after the refusal, want %d", n, tt.label, tt.count)
			}
		})
	}
	// A wrong PIN creates nothing either.
	bad := p11Conf(tok, "new")
	bad.PIN = "1" + bad.PIN
	if err := CreatePKCS11Key(bad); !errors.Is(err, ErrPIN) || strings.Contains(err.Error(), bad.PIN) {
		t.Fatalf("CreatePKCS11Key with a wrong PIN = %v", err)
	}
	if n := countObjects(t, c, "new"); n != 0 {
		t.Fatalf("%d objects after a refused create", n)
	}
}

func TestPKCS11SessionLost(t *testing.T) {
	tok, p := newP11(t, "lost")
	ctx := context.Background()
	sealed, err := p.Seal(ctx, []byte("root encryption key"))
	if err != nil {
		t.Fatal(err)
	}
	// Closing every session of the token also logs the process out, as a
	// token that was pulled and put back would.
	if err := p.s.mod.ctx.CloseAllSessions(p.s.slot); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Unseal(ctx, sealed); err != nil || string(got) != "root encryption key" {
		t.Fatalf("Unseal after the session was lost = %q, %v", got, err)
	}
	if _, err := p.PrivateKey(ctx, NodeKeySeed); err != nil {
		t.Fatalf("PrivateKey after the session was lost: %v", err)
	}

	// If logging in again fails, the error is the HSM's, not "invalid
	// ciphertext": an operator must tell a token that is down from a
	// wrong key.
	withSession(t, p11Conf(tok, "k"), func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		if err := c.SetPIN(sh, tok.PIN, "changed-"+tok.PIN); err != nil {
			t.Fatal(err)
		}
	})
	if err := p.s.mod.ctx.CloseAllSessions(p.s.slot); err != nil {
		t.Fatal(err)
	}
	_, err = p.Unseal(ctx, sealed)
	if err == nil || errors.Is(err, crypto.ErrDecrypt) || !errors.Is(err, ErrPIN) ||
		!errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) || strings.Contains(err.Error(), tok.PIN) {
		t.Fatalf("Unseal with the token refusing the PIN = %v; want a PIN error wrapping CKR_PIN_INCORRECT", err)
	}
	if !strings.HasPrefix(err.Error(), "hsm: pkcs11:lost/k: failed to unseal: ") {
		t.Fatalf("error %q does not name the HSM", err)
	}

	// Once the token takes the PIN again, the next call recovers.
	changed := p11Conf(tok, "k")
	changed.PIN = "changed-" + tok.PIN
	withSession(t, changed, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) {
		if err := c.SetPIN(sh, changed.PIN, tok.PIN); err != nil {
			t.Fatal(err)
		}
	})
	if got, err := p.Unseal(ctx, sealed); err != nil || string(got) != "root encryption key" {
		t.Fatalf("Unseal after the PIN was restored = %q, %v", got, err)
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Seal(ctx, nil); !errors.Is(err, errClosed) {
		t.Fatalf("Seal after Close = %v", err)
	}
}

func TestPKCS11Concurrent(t *testing.T) {
	_, p := newP11(t, "busy")
	ctx := context.Background()
	want, err := p.PrivateKey(ctx, RootAPIKeySeed)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				msg := fmt.Appendf(nil, "goroutine %d message %d", g, i)
				sealed, err := p.Seal(ctx, msg)
				if err != nil {
					errs <- err
					return
				}
				got, err := p.Unseal(ctx, sealed)
				if err != nil || !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("Unseal = %q, %v", got, err)
					return
				}
				k, err := p.PrivateKey(ctx, RootAPIKeySeed)
				if err != nil || k.String() != want.String() {
					errs <- fmt.Errorf("PrivateKey = %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPKCS11SharedModule(t *testing.T) {
	// Two HSMs on one token and module: closing one leaves the other
	// logged in and working, and the module loaded.
	tok, p := newP11(t, "shared")
	createKey(t, p11Conf(tok, "k2"))
	q, err := OpenPKCS11(p11Conf(tok, "k2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sealed, err := p.Seal(ctx, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.Unseal(ctx, sealed); err != nil || string(got) != "x" {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
}

func FuzzPKCS11Unseal(f *testing.F) {
	_, p := newP11(f, "fuzz")
	ctx := context.Background()
	sealed, err := p.Seal(ctx, []byte("root encryption key"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Fuzz(func(t *testing.T, ciphertext []byte) {
		plaintext, err := p.Unseal(ctx, ciphertext)
		if err == nil {
			if !bytes.Equal(ciphertext, sealed) || string(plaintext) != "root encryption key" {
				t.Fatalf("Unseal accepted %x, which this token never sealed", ciphertext)
			}
			return
		}
		assertDecryptErr(t, plaintext, err)
	})
}

// BenchmarkPKCS11OpenUnsealDerive measures what a node does with its HSM at
// start-up: open the token, unseal the root key, derive the root API key
// and the node key. "cold" loads and initializes the module each time, as
// a starting process does; "warm" has it loaded already.
func BenchmarkPKCS11OpenUnsealDerive(b *testing.B) {
	tok := softhsm.NewToken(b, "bench")
	c := p11Conf(tok, "k")
	createKey(b, c)
	ctx := context.Background()
	p, err := OpenPKCS11(c)
	if err != nil {
		b.Fatal(err)
	}
	sealed, err := p.Seal(ctx, make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	start := func(b *testing.B) {
		h, err := OpenPKCS11(c)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Unseal(ctx, sealed); err != nil {
			b.Fatal(err)
		}
		for _, seed := range [][]byte{RootAPIKeySeed, NodeKeySeed} {
			if _, err := h.PrivateKey(ctx, seed); err != nil {
				b.Fatal(err)
			}
		}
		if err := h.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("warm", func(b *testing.B) {
		for b.Loop() {
			start(b)
		}
	})
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			start(b)
		}
	})
}

// TestPKCS11ErrorMapping covers the return values SoftHSM never gives
// (it has no PIN lockout and reports a tag mismatch as CKR_GENERAL_ERROR).
func TestPKCS11ErrorMapping(t *testing.T) {
	c := PKCS11Config{Token: "tok", Key: "k", PIN: "secret-pin"}
	wrap := func(rv uint) error { return fmt.Errorf("op: %w", pkcs11.Error(rv)) }
	logins := []struct {
		rv       uint
		sentinel error // nil: success, errNone: an error of no sentinel
		text     string
	}{
		{pkcs11.CKR_USER_ALREADY_LOGGED_IN, nil, ""},
		{pkcs11.CKR_PIN_INCORRECT, ErrPIN, `hsm: wrong PIN for PKCS#11 token "tok"`},
		{pkcs11.CKR_PIN_LEN_RANGE, ErrPIN, `hsm: wrong PIN for PKCS#11 token "tok"`},
		{pkcs11.CKR_PIN_INVALID, ErrPIN, `hsm: wrong PIN for PKCS#11 token "tok"`},
		{pkcs11.CKR_PIN_LOCKED, ErrPIN, `hsm: the PIN of PKCS#11 token "tok" is locked`},
		{pkcs11.CKR_PIN_EXPIRED, ErrPIN, `hsm: the PIN of PKCS#11 token "tok" has expired`},
		{pkcs11.CKR_DEVICE_ERROR, errNone, `hsm: cannot log in to PKCS#11 token "tok": op: pkcs11: 0x30: CKR_DEVICE_ERROR`},
	}
	for _, tt := range logins {
		err := loginError(c, wrap(tt.rv))
		switch {
		case tt.sentinel == nil:
			if err != nil {
				t.Errorf("%#x: %v, want success", tt.rv, err)
			}
		case err == nil || err.Error() != tt.text || !errors.Is(err, pkcs11.Error(tt.rv)):
			t.Errorf("%#x: %v, want %q wrapping the return value", tt.rv, err, tt.text)
		case tt.sentinel != errNone && !errors.Is(err, tt.sentinel), tt.sentinel == errNone && errors.Is(err, ErrPIN):
			t.Errorf("%#x: %v does not match %v", tt.rv, err, tt.sentinel)
		}
	}

	kinds := []struct {
		rv          uint
		authentic   bool // notAuthentic is false
		sessionLost bool
	}{
		{pkcs11.CKR_ENCRYPTED_DATA_INVALID, false, false},
		{pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, false, false},
		{pkcs11.CKR_DATA_INVALID, false, false},
		{ckrAEADDecryptFailed, false, false},
		{pkcs11.CKR_SESSION_HANDLE_INVALID, true, true},
		{pkcs11.CKR_SESSION_CLOSED, true, true},
		{pkcs11.CKR_DEVICE_REMOVED, true, true},
		{pkcs11.CKR_TOKEN_NOT_PRESENT, true, true},
		{pkcs11.CKR_USER_NOT_LOGGED_IN, true, true},
		{pkcs11.CKR_DEVICE_ERROR, true, false},
		{pkcs11.CKR_GENERAL_ERROR, true, false},
	}
	for _, tt := range kinds {
		if got := notAuthentic(wrap(tt.rv)); got == tt.authentic {
			t.Errorf("notAuthentic(%#x) = %v", tt.rv, got)
		}
		if got := sessionLost(wrap(tt.rv)); got != tt.sessionLost {
			t.Errorf("sessionLost(%#x) = %v", tt.rv, got)
		}
	}
}

// errNone marks an expected error that matches none of the sentinels.
var errNone = errors.New("no sentinel")
