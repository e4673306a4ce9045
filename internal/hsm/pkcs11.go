//go:build cgo

package hsm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"aead.dev/mtls"
	"github.com/miekg/pkcs11"

	"github.com/keep-kms/keep/internal/crypto"
)

// Layout and domain separation of the PKCS#11 HSM. These values are part of
// every cluster sealed by a token and must never change.
const (
	pkcs11Format  = 1  // first byte of a sealed value
	pkcs11IVSize  = 12 // GCM nonce
	pkcs11TagSize = 16 // GCM tag
	pkcs11KeySize = 32 // both key objects

	pkcs11SealAD         = "keep/hsm/pkcs11/seal"
	pkcs11PrivateKeyInfo = "keep/hsm/pkcs11/private-key/"
)

// PKCS11Available reports whether this binary can load PKCS#11 modules: it
// was built with cgo (see pkcs11_nocgo.go for a build without).
const PKCS11Available = true

// ckrAEADDecryptFailed is PKCS#11 v3's CKR_AEAD_DECRYPT_FAILED, which
// miekg/pkcs11 v1.1.2 does not define; v3 tokens report a tag mismatch
// with it.
const ckrAEADDecryptFailed = 0x35

// describeToken names the token in messages: `token "L"` or `slot N`.
func (c PKCS11Config) describeToken() string {
	if c.Token == "" && c.Slot != nil {
		return "slot " + strconv.FormatUint(uint64(*c.Slot), 10)
	}
	return "token " + strconv.Quote(c.Token)
}

// PKCS11 is an HSM whose keys live on a PKCS#11 token: an AES-256 key seals
// with CKM_AES_GCM and a 32-byte generic secret derives private keys with
// CKM_SHA256_HMAC, both inside the token. It is safe for concurrent use;
// calls are serialized on one logged-in session.
type PKCS11 struct {
	name string
	s    *p11Session // behind a pointer so that copies share one session
}

var _ HSM = (*PKCS11)(nil)

// p11Session is the logged-in session of a PKCS11 and what it found on the
// token; mu guards every field and every call on the session.
type p11Session struct {
	mu     sync.Mutex
	conf   PKCS11Config
	mod    *p11Module
	slot   uint
	sh     pkcs11.SessionHandle
	open   bool // sh is a session this PKCS11 opened and has not closed
	aes    pkcs11.ObjectHandle
	mac    pkcs11.ObjectHandle
	closed bool
}

// OpenPKCS11 loads the module, finds the token, logs in and finds the key
// objects c.Key. Each failure is one line naming the module, token or key
// (never the PIN) and matches one of ErrModule, ErrTokenNotFound, ErrPIN,
// ErrKeyNotFound or ErrKeyInvalid; nothing on the token changes.
func OpenPKCS11(c PKCS11Config) (*PKCS11, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s := &p11Session{conf: c}
	if err := loadModule(s); err != nil {
		return nil, err
	}
	if err := s.reopen(); err != nil {
		s.close()
		return nil, err
	}
	return &PKCS11{name: c.name(), s: s}, nil
}

// CreatePKCS11Key generates the two key objects labelled c.Key inside the
// token: non-extractable, sensitive, private token objects. It refuses, with
// ErrKeyExists and creating nothing, if any object already has that label.
func CreatePKCS11Key(c PKCS11Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	s := &p11Session{conf: c}
	if err := loadModule(s); err != nil {
		return err
	}
	defer s.close()
	// A read-write session: generating a token object needs one.
	if err := s.login(pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION); err != nil {
		return err
	}
	ctx := s.mod.ctx
	existing, err := s.find([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, c.Key)})
	if err != nil {
		return fmt.Errorf("hsm: cannot search PKCS#11 %s for key %q: %w", c.describeToken(), c.Key, err)
	}
	if len(existing) > 0 {
		return startErr(ErrKeyExists, nil, "PKCS#11 %s already holds %d object(s) labelled %q; nothing created", c.describeToken(), len(existing), c.Key)
	}
	aes, err := ctx.GenerateKey(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		keyTemplate(c.Key, pkcs11.CKK_AES, pkcs11.CKA_ENCRYPT, pkcs11.CKA_DECRYPT))
	if err != nil {
		return fmt.Errorf("hsm: cannot generate the AES key %q on PKCS#11 %s: %w", c.Key, c.describeToken(), err)
	}
	_, err = ctx.GenerateKey(s.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)},
		keyTemplate(c.Key, pkcs11.CKK_GENERIC_SECRET, pkcs11.CKA_SIGN, pkcs11.CKA_VERIFY))
	if err != nil {
		// Half a key would make the label unusable and block a retry.
		if derr := ctx.DestroyObject(s.sh, aes); derr != nil {
			return fmt.Errorf("hsm: cannot generate the HMAC key %q on PKCS#11 %s: %w; removing its AES key failed too: %v", c.Key, c.describeToken(), err, derr)
		}
		return fmt.Errorf("hsm: cannot generate the HMAC key %q on PKCS#11 %s: %w", c.Key, c.describeToken(), err)
	}
	return nil
}

// keyTemplate is the template of a 32-byte secret key object of keyType
// that may do exactly the operations in allowed.
func keyTemplate(label string, keyType uint, allowed ...uint) []*pkcs11.Attribute {
	usage := map[uint]bool{}
	for _, a := range allowed {
		usage[a] = true
	}
	attrs := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, pkcs11KeySize),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
	}
	for _, a := range []uint{pkcs11.CKA_ENCRYPT, pkcs11.CKA_DECRYPT, pkcs11.CKA_SIGN, pkcs11.CKA_VERIFY,
		pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP, pkcs11.CKA_DERIVE} {
		attrs = append(attrs, pkcs11.NewAttribute(a, usage[a]))
	}
	return attrs
}

// Seal encrypts plaintext with AES-256-GCM inside the token under a random
// IV; the result is 1 || IV || ciphertext || tag.
func (p *PKCS11) Seal(ctx context.Context, plaintext []byte) ([]byte, error) {
	var sealed []byte
	err := p.s.do(ctx, func(s *p11Session) (err error) {
		sealed, err = s.seal(plaintext)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: %s: failed to seal: %w", p.name, err)
	}
	return sealed, nil
}

// Unseal decrypts what Seal returned inside the token. A malformed input, a
// wrong key or a tag mismatch is exactly crypto.ErrDecrypt; a failure of the
// token itself is another error that wraps the pkcs11.Error, so that
// operators can tell a wrong key from an HSM that is down.
func (p *PKCS11) Unseal(ctx context.Context, ciphertext []byte) ([]byte, error) {
	if _, _, ok := splitSealed(ciphertext); !ok {
		return nil, crypto.ErrDecrypt // no need to ask the token
	}
	var plaintext []byte
	err := p.s.do(ctx, func(s *p11Session) (err error) {
		plaintext, err = s.unseal(ciphertext)
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)) && s.selfTest() == nil {
			// SoftHSM (2.6 at least) reports a tag mismatch as a general
			// error. A token that still seals and unseals its own
			// ciphertexts is fine: the input was not authentic.
			return errNotAuthentic
		}
		return err
	})
	if err != nil {
		if notAuthentic(err) {
			return nil, crypto.ErrDecrypt
		}
		return nil, fmt.Errorf("hsm: %s: failed to unseal: %w", p.name, err)
	}
	return plaintext, nil
}

// seal is Seal on the session.
func (s *p11Session) seal(plaintext []byte) ([]byte, error) {
	iv := make([]byte, pkcs11IVSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	params := pkcs11.NewGCMParams(iv, []byte(pkcs11SealAD), 8*pkcs11TagSize)
	defer params.Free()
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
	if err := s.mod.ctx.EncryptInit(s.sh, mech, s.aes); err != nil {
		return nil, err
	}
	ct, err := s.mod.ctx.Encrypt(s.sh, plaintext)
	if err != nil {
		return nil, err
	}
	// Some tokens choose the IV themselves; store the one used.
	if used := params.IV(); len(used) == pkcs11IVSize {
		iv = used
	}
	if len(ct) != len(plaintext)+pkcs11TagSize {
		return nil, fmt.Errorf("token returned %d bytes for %d bytes of plaintext", len(ct), len(plaintext))
	}
	return append(append([]byte{pkcs11Format}, iv...), ct...), nil
}

// unseal is Unseal on the session; it returns the token's errors as they are.
func (s *p11Session) unseal(sealed []byte) ([]byte, error) {
	iv, ct, ok := splitSealed(sealed)
	if !ok {
		return nil, errNotAuthentic
	}
	params := pkcs11.NewGCMParams(iv, []byte(pkcs11SealAD), 8*pkcs11TagSize)
	defer params.Free()
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
	if err := s.mod.ctx.DecryptInit(s.sh, mech, s.aes); err != nil {
		return nil, err
	}
	return s.mod.ctx.Decrypt(s.sh, ct)
}

// splitSealed splits 1 || IV || ciphertext || tag; ok is false if sealed is
// too short or of another format.
func splitSealed(sealed []byte) (iv, ct []byte, ok bool) {
	if len(sealed) < 1+pkcs11IVSize+pkcs11TagSize || sealed[0] != pkcs11Format {
		return nil, nil, false
	}
	return sealed[1 : 1+pkcs11IVSize], sealed[1+pkcs11IVSize:], true
}

// selfTest seals and unseals a fixed value, to tell whether the token works.
func (s *p11Session) selfTest() error {
	probe := []byte("keep/hsm/pkcs11/self-test")
	sealed, err := s.seal(probe)
	if err != nil {
		return err
	}
	got, err := s.unseal(sealed)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, probe) {
		return errors.New("self-test: the token unsealed another value")
	}
	return nil
}

// errNotAuthentic marks, inside this file, a ciphertext that does not
// decrypt; Unseal turns it into crypto.ErrDecrypt.
var errNotAuthentic = errors.New("not authentic")

// notAuthentic reports whether err is the token's way of saying that a
// ciphertext does not decrypt under the key.
func notAuthentic(err error) bool {
	if errors.Is(err, errNotAuthentic) {
		return true
	}
	var rv pkcs11.Error
	if !errors.As(err, &rv) {
		return false
	}
	switch rv {
	case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		pkcs11.CKR_DATA_INVALID, pkcs11.CKR_DATA_LEN_RANGE, ckrAEADDecryptFailed:
		return true
	}
	return false
}

// PrivateKey returns the Ed25519 key whose seed is the HMAC-SHA256, computed
// inside the token with the generic secret key, of
// "keep/hsm/pkcs11/private-key/" + seed.
func (p *PKCS11) PrivateKey(ctx context.Context, seed []byte) (mtls.PrivateKey, error) {
	var mac []byte
	err := p.s.do(ctx, func(s *p11Session) error {
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}
		if err := s.mod.ctx.SignInit(s.sh, mech, s.mac); err != nil {
			return err
		}
		var err error
		mac, err = s.mod.ctx.Sign(s.sh, append([]byte(pkcs11PrivateKeyInfo), seed...))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: %s: failed to derive private key: %w", p.name, err)
	}
	defer clear(mac)
	if len(mac) != 32 {
		return nil, fmt.Errorf("hsm: %s: failed to derive private key: HMAC is %d bytes, want 32", p.name, len(mac))
	}
	return ed25519Key(mac)
}

// Close logs out, closes the session and, if no other PKCS11 of this
// process uses the module, finalizes and unloads it. Later calls fail.
func (p *PKCS11) Close() error {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if p.s.closed {
		return nil
	}
	p.s.closed = true
	if err := p.s.close(); err != nil {
		return fmt.Errorf("hsm: %s: %w", p.name, err)
	}
	return nil
}

// errClosed is returned by the operations of a closed PKCS11.
var errClosed = errors.New("HSM is closed")

// do runs op on the logged-in session. If the session is gone (closed,
// token removed, logged out) it opens a new one, logs in, finds the keys
// again and retries op once.
func (s *p11Session) do(ctx context.Context, op func(*p11Session) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if s.open {
		err := op(s)
		if !sessionLost(err) {
			return err
		}
	}
	if err := s.reopen(); err != nil {
		return fmt.Errorf("session lost and reopening failed: %w", err)
	}
	return op(s)
}

// sessionLost reports whether err means the session, the login or the key
// handles are gone, which a new session may cure.
func sessionLost(err error) bool {
	var rv pkcs11.Error
	if !errors.As(err, &rv) {
		return false
	}
	switch rv {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_KEY_HANDLE_INVALID,
		pkcs11.CKR_OBJECT_HANDLE_INVALID:
		return true
	}
	return false
}

// reopen replaces the session, if any, by a new read-only logged-in one and
// finds the key objects on it. If that fails, no session is left open, so
// that the next call tries again from the start.
func (s *p11Session) reopen() error {
	s.closeSession()
	err := s.login(pkcs11.CKF_SERIAL_SESSION)
	if err == nil {
		err = s.findKeys()
	}
	if err != nil {
		s.closeSession()
	}
	return err
}

// login finds the slot, opens a session with flags and logs in as user.
func (s *p11Session) login(flags uint) error {
	c := s.conf
	slot, err := s.mod.findSlot(c)
	if err != nil {
		return err
	}
	sh, err := s.mod.ctx.OpenSession(slot, flags)
	if err != nil {
		return fmt.Errorf("hsm: cannot open a session on PKCS#11 %s: %w", c.describeToken(), err)
	}
	s.slot, s.sh, s.open = slot, sh, true
	s.mod.setSlot(s, slot)
	return loginError(c, s.mod.ctx.Login(sh, pkcs11.CKU_USER, c.PIN))
}

// loginError maps the result of C_Login to a start-up error.
func loginError(c PKCS11Config, err error) error {
	var rv pkcs11.Error
	errors.As(err, &rv)
	switch {
	case err == nil, rv == pkcs11.CKR_USER_ALREADY_LOGGED_IN:
		// Login is per token and process: another PKCS11 on this token
		// is logged in already (so this PIN is not checked again).
		return nil
	case rv == pkcs11.CKR_PIN_INCORRECT, rv == pkcs11.CKR_PIN_LEN_RANGE, rv == pkcs11.CKR_PIN_INVALID:
		return startErr(ErrPIN, err, "wrong PIN for PKCS#11 %s", c.describeToken())
	case rv == pkcs11.CKR_PIN_LOCKED:
		return startErr(ErrPIN, err, "the PIN of PKCS#11 %s is locked", c.describeToken())
	case rv == pkcs11.CKR_PIN_EXPIRED:
		return startErr(ErrPIN, err, "the PIN of PKCS#11 %s has expired", c.describeToken())
	default:
		return fmt.Errorf("hsm: cannot log in to PKCS#11 %s: %w", c.describeToken(), err)
	}
}

// find returns the handles of the objects matching template.
func (s *p11Session) find(template []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	ctx := s.mod.ctx
	if err := ctx.FindObjectsInit(s.sh, template); err != nil {
		return nil, err
	}
	var found []pkcs11.ObjectHandle
	for {
		objs, _, err := ctx.FindObjects(s.sh, 16)
		if err != nil {
			ctx.FindObjectsFinal(s.sh)
			return nil, err
		}
		if len(objs) == 0 {
			break
		}
		found = append(found, objs...)
	}
	return found, ctx.FindObjectsFinal(s.sh)
}

// findKeys finds the AES and the generic secret key labelled conf.Key and
// checks that they are the objects CreatePKCS11Key makes.
func (s *p11Session) findKeys() error {
	c := s.conf
	objs, err := s.find([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, c.Key),
	})
	if err != nil {
		return fmt.Errorf("hsm: cannot search PKCS#11 %s for key %q: %w", c.describeToken(), c.Key, err)
	}
	var aes, mac []pkcs11.ObjectHandle
	for _, o := range objs {
		attrs, err := s.mod.ctx.GetAttributeValue(s.sh, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil)})
		if err != nil {
			return fmt.Errorf("hsm: cannot read key %q on PKCS#11 %s: %w", c.Key, c.describeToken(), err)
		}
		switch t, _ := ulong(attrs[0].Value); t {
		case pkcs11.CKK_AES:
			aes = append(aes, o)
		case pkcs11.CKK_GENERIC_SECRET:
			mac = append(mac, o)
		default:
			return startErr(ErrKeyInvalid, nil, "key %q on PKCS#11 %s: a secret key of type 0x%X, want only an AES and a generic secret key", c.Key, c.describeToken(), t)
		}
	}
	for _, k := range []struct {
		what    string
		handles []pkcs11.ObjectHandle
		usage   []uint
		dst     *pkcs11.ObjectHandle
	}{
		{"AES", aes, []uint{pkcs11.CKA_ENCRYPT, pkcs11.CKA_DECRYPT}, &s.aes},
		{"generic secret (HMAC)", mac, []uint{pkcs11.CKA_SIGN}, &s.mac},
	} {
		switch len(k.handles) {
		case 0:
			return startErr(ErrKeyNotFound, nil, "key %q not found on PKCS#11 %s: no %s key object with that label (create the key with keep --pkcs11)", c.Key, c.describeToken(), k.what)
		case 1:
		default:
			return startErr(ErrKeyInvalid, nil, "key %q on PKCS#11 %s: %d %s key objects with that label, want one", c.Key, c.describeToken(), len(k.handles), k.what)
		}
		if err := s.checkKey(k.handles[0], k.what, k.usage); err != nil {
			return err
		}
		*k.dst = k.handles[0]
	}
	return nil
}

// checkKey checks that key is 32 bytes, non-extractable, and allowed usage.
func (s *p11Session) checkKey(key pkcs11.ObjectHandle, what string, usage []uint) error {
	c := s.conf
	want := append([]uint{pkcs11.CKA_VALUE_LEN, pkcs11.CKA_EXTRACTABLE}, usage...)
	template := make([]*pkcs11.Attribute, len(want))
	for i, a := range want {
		template[i] = pkcs11.NewAttribute(a, nil)
	}
	attrs, err := s.mod.ctx.GetAttributeValue(s.sh, key, template)
	if err != nil {
		return fmt.Errorf("hsm: cannot read key %q on PKCS#11 %s: %w", c.Key, c.describeToken(), err)
	}
	invalid := func(format string, args ...any) error {
		return startErr(ErrKeyInvalid, nil, "key %q on PKCS#11 %s: the %s key %s", c.Key, c.describeToken(), what, fmt.Sprintf(format, args...))
	}
	if n, ok := ulong(attrs[0].Value); !ok || n != pkcs11KeySize {
		return invalid("is %d bytes, want %d", n, pkcs11KeySize)
	}
	if isTrue(attrs[1].Value) {
		return invalid("is extractable; the key must never leave the token")
	}
	for _, a := range attrs[2:] {
		if !isTrue(a.Value) {
			return invalid("may not %s", usageName[a.Type])
		}
	}
	return nil
}

var usageName = map[uint]string{pkcs11.CKA_ENCRYPT: "encrypt", pkcs11.CKA_DECRYPT: "decrypt", pkcs11.CKA_SIGN: "sign"}

// ulong decodes a CK_ULONG attribute value, an unsigned long in native
// byte order.
func ulong(v []byte) (uint, bool) {
	switch len(v) {
	case 8:
		return uint(binary.NativeEndian.Uint64(v)), true
	case 4:
		return uint(binary.NativeEndian.Uint32(v)), true
	}
	return 0, false
}

// isTrue decodes a CK_BBOOL attribute value.
func isTrue(v []byte) bool { return len(v) == 1 && v[0] != 0 }

// closeSession closes the session, if open, ignoring errors: it may be
// gone already.
func (s *p11Session) closeSession() {
	if s.open {
		s.mod.ctx.CloseSession(s.sh)
		s.open = false
	}
}

// close logs out (unless another PKCS11 of the process is logged in to the
// same token), closes the session and releases the module.
func (s *p11Session) close() error {
	var errs []error
	if s.open {
		if !s.mod.sharedSlot(s) {
			if err := s.mod.ctx.Logout(s.sh); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN)) && !sessionLost(err) {
				errs = append(errs, fmt.Errorf("logout: %w", err))
			}
		}
		if err := s.mod.ctx.CloseSession(s.sh); err != nil && !sessionLost(err) {
			errs = append(errs, fmt.Errorf("close session: %w", err))
		}
		s.open = false
	}
	if err := s.mod.release(s); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
