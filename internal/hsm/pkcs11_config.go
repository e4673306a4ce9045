package hsm

import (
	"errors"
	"fmt"
	"io"
	"strconv"
)

// PKCS11Config names a key on a PKCS#11 token and how to log in to it.
//
// Printing a PKCS11Config with any verb shows every field but the PIN.
type PKCS11Config struct {
	Name   string // the HSM's name in the cluster; "" = DefaultName()
	Module string // path of the PKCS#11 module (.so)
	Token  string // token label; exactly one of Token and Slot
	Slot   *uint  // slot ID
	Key    string // CKA_LABEL of the key objects
	PIN    string // user PIN; never printed, never in an error
}

// maxTokenLabel is the size of CK_TOKEN_INFO.label: a longer label can
// match no token.
const maxTokenLabel = 32

// DefaultName returns "pkcs11:" + the token label (or "slot-N") + "/" + the
// key label, the name of an HSM whose config gives none.
func (c PKCS11Config) DefaultName() string {
	return "pkcs11:" + c.tokenName() + "/" + c.Key
}

// name is the HSM's name: Name, or DefaultName if Name is empty.
func (c PKCS11Config) name() string {
	if c.Name != "" {
		return c.Name
	}
	return c.DefaultName()
}

// tokenName is the token part of DefaultName.
func (c PKCS11Config) tokenName() string {
	if c.Token == "" && c.Slot != nil {
		return "slot-" + strconv.FormatUint(uint64(*c.Slot), 10)
	}
	return c.Token
}

// Validate reports the first missing or contradictory field: the module and
// the key label are required, exactly one of Token and Slot, and a PIN; the
// name (or DefaultName) must be a valid HSM name (ValidName).
func (c PKCS11Config) Validate() error {
	switch {
	case c.Module == "":
		return errors.New("hsm: invalid PKCS#11 config: no module path")
	case c.Key == "":
		return errors.New("hsm: invalid PKCS#11 config: no key label")
	case c.Token == "" && c.Slot == nil:
		return errors.New("hsm: invalid PKCS#11 config: neither a token label nor a slot")
	case c.Token != "" && c.Slot != nil:
		return errors.New("hsm: invalid PKCS#11 config: both a token label and a slot; give one")
	case len(c.Token) > maxTokenLabel:
		return fmt.Errorf("hsm: invalid PKCS#11 config: token label is %d bytes, at most %d", len(c.Token), maxTokenLabel)
	case c.PIN == "":
		return errors.New("hsm: invalid PKCS#11 config: empty PIN")
	}
	if err := ValidName(c.name()); err != nil {
		return fmt.Errorf("hsm: invalid PKCS#11 config: %w; give the HSM another name", err)
	}
	return nil
}

// Format prints c without its PIN, whatever the verb, so that no log line
// or error built from a config can reveal it.
func (c PKCS11Config) Format(f fmt.State, _ rune) {
	slot := "<nil>"
	if c.Slot != nil {
		slot = strconv.FormatUint(uint64(*c.Slot), 10)
	}
	pin := ""
	if c.PIN != "" {
		pin = "<redacted>"
	}
	fmt.Fprintf(f, "{Name:%q Module:%q Token:%q Slot:%s Key:%q PIN:%s}", c.Name, c.Module, c.Token, slot, c.Key, pin)
}

// Sentinels of the start-up errors of OpenPKCS11 and CreatePKCS11Key,
// checked with errors.Is. The errors themselves name the module, token and
// key label, never the PIN.
var (
	// ErrModule means the module cannot be loaded or initialized.
	ErrModule = errors.New("hsm: PKCS#11 module not loadable")
	// ErrTokenNotFound means no token has the label, or the slot has none.
	ErrTokenNotFound = errors.New("hsm: PKCS#11 token not found")
	// ErrPIN means the token refused the PIN: wrong, locked or expired.
	ErrPIN = errors.New("hsm: PKCS#11 PIN refused")
	// ErrKeyNotFound means the token lacks one of the two key objects.
	ErrKeyNotFound = errors.New("hsm: PKCS#11 key not found")
	// ErrKeyInvalid means key objects with the label exist but are not
	// what CreatePKCS11Key makes: wrong type or size, extractable, missing
	// usage, or more than one of a kind.
	ErrKeyInvalid = errors.New("hsm: PKCS#11 key objects not usable")
	// ErrKeyExists means CreatePKCS11Key found objects with the label.
	ErrKeyExists = errors.New("hsm: PKCS#11 key already exists")
)

// startError is a one-line start-up error of kind (one of the sentinels)
// that may wrap the PKCS#11 return value behind it.
type startError struct {
	kind  error
	msg   string
	cause error
}

func (e *startError) Error() string        { return e.msg }
func (e *startError) Is(target error) bool { return target == e.kind }
func (e *startError) Unwrap() error        { return e.cause }

// startErr returns a startError of kind whose text is "hsm: " and the
// formatted message.
func startErr(kind, cause error, format string, args ...any) error {
	return &startError{kind: kind, msg: "hsm: " + fmt.Sprintf(format, args...), cause: cause}
}

// Name returns the HSM's name in the cluster.
func (p PKCS11) Name() string { return p.name }

// String returns Name: a PKCS11 prints as its name only.
func (p PKCS11) String() string { return p.name }

// GoString returns Name, for %#v.
func (p PKCS11) GoString() string { return p.name }

// Format prints Name whatever the verb, so that no verb can reach the PIN
// held for logging in again; a value receiver covers PKCS11 values too.
func (p PKCS11) Format(f fmt.State, _ rune) { io.WriteString(f, p.name) }
