package kesformat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"sync"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/tinylib/msgp/msgp"
	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/chacha20poly1305"
)

// ErrDecrypt is the one error of every failed decryption: a tampered or
// malformed ciphertext, a wrong context or another key. It is Keep's own
// crypto.ErrDecrypt, so the server answers "invalid ciphertext" for KES and
// Keep ciphertexts alike, and one error for all causes gives no oracle.
var ErrDecrypt = crypto.ErrDecrypt

// Encoding names one of the three ways KES has encoded a ciphertext.
type Encoding string

// The ciphertext encodings, oldest first.
const (
	// EncodingJSON is a JSON object {"aead","id","iv","nonce","bytes"}, made
	// by KES up to v0.19.1.
	EncodingJSON Encoding = "json"
	// EncodingMsgpack is a msgpack array [algorithm, id, iv, nonce, bytes],
	// made by KES v0.19.2 to 2024-01-11T13-09-29Z.
	EncodingMsgpack Encoding = "msgpack"
	// EncodingRaw is sealed || iv || nonce, made since 2024-02-29; it is
	// also what any input that is not a valid JSON or msgpack ciphertext is
	// taken for.
	EncodingRaw Encoding = "raw"
)

// Sizes of the parts of every KES ciphertext.
const (
	ivSize    = 16
	nonceSize = 12
	tagSize   = 16
	// randSize is the iv and nonce that end a raw ciphertext; a raw
	// ciphertext of no more than that is refused, as KES does.
	randSize = ivSize + nonceSize
)

// The algorithm names of the legacy encodings.
const (
	jsonAES256   = "AES-256-GCM-HMAC-SHA-256"
	jsonChaCha20 = "ChaCha20Poly1305"
)

// ciphertext is a KES ciphertext split into its parts; sealed is the AEAD
// output (ciphertext || tag).
type ciphertext struct {
	encoding  Encoding
	algorithm crypto.KeyType // named by a JSON or msgpack ciphertext, "" for raw
	sealed    []byte
	iv        []byte
	nonce     []byte
}

// DetectEncoding returns the encoding KES 63649d0 would decode b with: JSON or
// msgpack only if b parses completely as such a ciphertext, raw otherwise.
// A raw ciphertext starts with '{' or 0x95 once in 128, so the first byte
// alone does not decide.
func DetectEncoding(b []byte) Encoding {
	c, ok := parseStructured(b)
	if !ok {
		return EncodingRaw
	}
	return c.encoding
}

// parseCiphertext splits b following KES's parseCiphertext and
// SecretKey.Decrypt; ok is false if b cannot be a ciphertext at all.
func parseCiphertext(b []byte) (c ciphertext, ok bool) {
	if c, ok := parseStructured(b); ok {
		return c, true
	}
	if len(b) <= randSize {
		return ciphertext{}, false
	}
	n := len(b) - randSize
	return ciphertext{
		encoding: EncodingRaw,
		sealed:   b[:n],
		iv:       b[n : n+ivSize],
		nonce:    b[n+ivSize:],
	}, true
}

// parseStructured parses b as a msgpack or JSON ciphertext, choosing which by
// the first byte as KES does, and reports whether the parse succeeded.
func parseStructured(b []byte) (ciphertext, bool) {
	if len(b) == 0 {
		return ciphertext{}, false
	}
	switch b[0] {
	case 0x95: // msgpack fixarray of 5 items
		return parseMsgpack(b)
	case '{':
		return parseJSON(b)
	}
	return ciphertext{}, false
}

// parseMsgpack reads [algorithm str, id str, iv bin16, nonce bin12, bytes bin]
// with the msgp functions KES uses, nothing may follow. The algorithm must be
// one KES knows; the id is not checked, as in KES 63649d0. The zero-copy
// readers accept exactly what KES's ReadStringBytes and ReadExactBytes accept
// (the same type bytes, then a length check) without allocating.
func parseMsgpack(b []byte) (ciphertext, bool) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n != 5 {
		return ciphertext{}, false
	}
	alg, b, err := msgp.ReadStringZC(b)
	if err != nil {
		return ciphertext{}, false
	}
	if _, b, err = msgp.ReadStringZC(b); err != nil { // id
		return ciphertext{}, false
	}
	iv, b, err := msgp.ReadBytesZC(b)
	if err != nil || len(iv) != ivSize {
		return ciphertext{}, false
	}
	nonce, b, err := msgp.ReadBytesZC(b)
	if err != nil || len(nonce) != nonceSize {
		return ciphertext{}, false
	}
	sealed, b, err := msgp.ReadBytesZC(b)
	if err != nil || len(b) != 0 {
		return ciphertext{}, false
	}
	c := ciphertext{encoding: EncodingMsgpack, sealed: sealed, iv: iv, nonce: nonce}
	switch string(alg) {
	case "AES256", "AES256-GCM_SHA256":
		c.algorithm = crypto.AES256
	case "ChaCha20", "XCHACHA20-POLY1305":
		c.algorithm = crypto.ChaCha20
	default:
		return ciphertext{}, false
	}
	return c, true
}

// parseJSON reads {"aead","id","iv","nonce","bytes"} with the checks of KES's
// ciphertext.UnmarshalJSON. The exact form KES's encoding/json wrote takes a
// fast path (encoding/json costs more than the decryption); anything else,
// even a valid variant, goes to encoding/json, so only encoding/json decides
// what is invalid.
func parseJSON(b []byte) (ciphertext, bool) {
	if c, ok := parseJSONFast(b); ok {
		return c, true
	}
	return parseJSONReflect(b)
}

// parseJSONReflect is parseJSON by encoding/json, as KES does it.
func parseJSONReflect(b []byte) (ciphertext, bool) {
	var v struct {
		AEAD  string `json:"aead"`
		ID    string `json:"id"`
		IV    []byte `json:"iv"`
		Nonce []byte `json:"nonce"`
		Bytes []byte `json:"bytes"`
	}
	if json.Unmarshal(b, &v) != nil || len(v.IV) != ivSize || len(v.Nonce) != nonceSize {
		return ciphertext{}, false
	}
	alg, ok := jsonAlgorithm(v.AEAD)
	if !ok {
		return ciphertext{}, false
	}
	return ciphertext{encoding: EncodingJSON, algorithm: alg, sealed: v.Bytes, iv: v.IV, nonce: v.Nonce}, true
}

// jsonAlgorithm is the algorithm a JSON ciphertext names in its "aead"
// member.
func jsonAlgorithm(aead string) (crypto.KeyType, bool) {
	switch aead {
	case jsonAES256:
		return crypto.AES256, true
	case jsonChaCha20:
		return crypto.ChaCha20, true
	}
	return "", false
}

// parseJSONFast parses only the exact bytes encoding/json wrote for KES:
// {"aead":"…","id":"…","iv":"…","nonce":"…","bytes":"…"} ("id" may be
// missing), no white space, values of printable ASCII without '"' or '\'
// (JSON strings that need no unquoting). For that input encoding/json's
// result is the same; ok false means "not that form", never "invalid".
func parseJSONFast(b []byte) (c ciphertext, ok bool) {
	var aead []byte
	var text [3][]byte // iv, nonce, bytes: base64
	if b, ok = jsonMember(b, `{"aead":"`); !ok {
		return ciphertext{}, false
	}
	if aead, b, ok = jsonPlainString(b); !ok {
		return ciphertext{}, false
	}
	if rest, ok := jsonMember(b, `,"id":"`); ok {
		if _, b, ok = jsonPlainString(rest); !ok {
			return ciphertext{}, false
		}
	}
	for i, name := range [3]string{`,"iv":"`, `,"nonce":"`, `,"bytes":"`} {
		if b, ok = jsonMember(b, name); !ok {
			return ciphertext{}, false
		}
		if text[i], b, ok = jsonBase64String(b); !ok {
			return ciphertext{}, false
		}
	}
	if string(b) != "}" {
		return ciphertext{}, false
	}
	// Decode as encoding/json does for a []byte field, into one buffer.
	enc := base64.StdEncoding
	buf := make([]byte, enc.DecodedLen(len(text[0]))+enc.DecodedLen(len(text[1]))+enc.DecodedLen(len(text[2])))
	var parts [3][]byte
	for i, t := range text {
		n, err := enc.Decode(buf, t)
		if err != nil {
			return ciphertext{}, false
		}
		parts[i], buf = buf[:n:n], buf[enc.DecodedLen(len(t)):]
	}
	if len(parts[0]) != ivSize || len(parts[1]) != nonceSize {
		return ciphertext{}, false
	}
	alg, ok := jsonAlgorithm(string(aead))
	if !ok {
		return ciphertext{}, false
	}
	return ciphertext{encoding: EncodingJSON, algorithm: alg, iv: parts[0], nonce: parts[1], sealed: parts[2]}, true
}

// jsonMember cuts prefix (a member name and the opening quote of its value)
// from b.
func jsonMember(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

// jsonPlainString returns the string value that b starts with, up to its
// closing quote, if it has only characters JSON does not escape.
func jsonPlainString(b []byte) (value, rest []byte, ok bool) {
	for i, ch := range b {
		switch {
		case ch == '"':
			return b[:i], b[i+1:], true
		case ch < 0x20 || ch > 0x7e || ch == '\\':
			return nil, b, false
		}
	}
	return nil, b, false
}

// jsonBase64String is jsonPlainString for a value that is then decoded
// with base64.StdEncoding, which refuses every character JSON escapes except
// '\r' and '\n' (it skips those): so only they need looking for, which
// bytes.IndexByte does much faster than a loop over every character.
func jsonBase64String(b []byte) (value, rest []byte, ok bool) {
	end := bytes.IndexByte(b, '"')
	if end < 0 {
		return nil, b, false
	}
	value = b[:end]
	if bytes.IndexByte(value, '\n') >= 0 || bytes.IndexByte(value, '\r') >= 0 {
		return nil, b, false
	}
	return value, b[end+1:], true
}

// Cipher decrypts the ciphertexts of one KES key; it is safe for concurrent
// use, and keeps its HMAC state between calls so that an AES256 decryption
// costs what a Keep decryption costs.
type Cipher struct {
	alg      crypto.KeyType
	key      [KeySize]byte
	implicit bool      // the key file named no algorithm, see Key.AlgorithmImplicit
	scratch  sync.Pool // of *aesScratch
}

// aesScratch is the working memory of an AES256 decryption, pooled so that
// deriving the message key allocates nothing.
type aesScratch struct {
	// mac is HMAC-SHA256 keyed with the key material; crypto/hmac caches the
	// pad states after the first Reset, so a derivation costs two SHA-256
	// compressions.
	mac hash.Hash
	key [sha256.Size]byte
}

// NewCipher returns the Cipher of a KES key of algorithm alg (AES256 or
// ChaCha20) with the 32 bytes of material, which it copies.
func NewCipher(alg crypto.KeyType, material []byte) (*Cipher, error) {
	if alg != crypto.AES256 && alg != crypto.ChaCha20 {
		return nil, fmt.Errorf("kesformat: %w %q", crypto.ErrInvalidKeyType, string(alg))
	}
	if len(material) != KeySize {
		return nil, fmt.Errorf("kesformat: %w: %d bytes, want %d", crypto.ErrInvalidKeyMaterial, len(material), KeySize)
	}
	c := &Cipher{alg: alg}
	copy(c.key[:], material)
	c.scratch.New = func() any {
		mac := hmac.New(sha256.New, c.key[:])
		mac.Reset() // makes crypto/hmac precompute the pad states
		return &aesScratch{mac: mac}
	}
	return c, nil
}

// NewImplicitCipher returns the Cipher of a KES key whose file named no
// algorithm (Key.AlgorithmImplicit): AES256 like KES 63649d0, and the
// algorithm a JSON or msgpack ciphertext names if AES256 fails (see
// Decrypt). A server that imports such a key keeps that fact to use this.
func NewImplicitCipher(material []byte) (*Cipher, error) {
	c, err := NewCipher(crypto.AES256, material)
	if err != nil {
		return nil, err
	}
	c.implicit = true
	return c, nil
}

// Cipher returns the Cipher of k: NewImplicitCipher if its file named no
// algorithm, NewCipher otherwise.
func (k *Key) Cipher() (*Cipher, error) {
	newCipher := func(material []byte) (*Cipher, error) { return NewCipher(k.Algorithm, material) }
	if k.AlgorithmImplicit {
		newCipher = NewImplicitCipher
	}
	c, err := newCipher(k.Material)
	if err != nil {
		return nil, fmt.Errorf("kesformat: key %q: %w", k.Name, err)
	}
	return c, nil
}

// Decrypt returns the plaintext of a KES ciphertext in any of its encodings,
// authenticated with associatedData (KES's context; nil and empty are the
// same). Like KES 63649d0 it uses the key's algorithm, whatever a JSON or
// msgpack ciphertext names. One exception does better than KES: for a key
// whose file named no algorithm, the KES versions that made JSON and msgpack
// ciphertexts chose the AEAD per ciphertext (ChaCha20 on CPUs without AES
// instructions), so if the key's algorithm fails, the named one is tried.
// Every failure is exactly ErrDecrypt.
func (c *Cipher) Decrypt(ciphertext, associatedData []byte) ([]byte, error) {
	ct, ok := parseCiphertext(ciphertext)
	if !ok || len(ct.sealed) < tagSize {
		return nil, ErrDecrypt
	}
	plaintext, err := c.open(c.alg, ct, associatedData)
	if err != nil && c.implicit && ct.algorithm != "" && ct.algorithm != c.alg {
		plaintext, err = c.open(ct.algorithm, ct, associatedData)
	}
	if err != nil {
		return nil, ErrDecrypt
	}
	return plaintext, nil
}

// open derives the message key from the key and the iv, as KES does, and
// opens the sealed bytes with the AEAD of alg.
func (c *Cipher) open(alg crypto.KeyType, ct ciphertext, associatedData []byte) ([]byte, error) {
	var aead cipher.AEAD
	switch alg {
	case crypto.AES256:
		sc := c.scratch.Get().(*aesScratch)
		sc.mac.Reset()
		sc.mac.Write(ct.iv)
		block, err := aes.NewCipher(sc.mac.Sum(sc.key[:0]))
		clear(sc.key[:]) // the block cipher keeps its own expanded key
		c.scratch.Put(sc)
		if err != nil {
			return nil, err
		}
		if aead, err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
	case crypto.ChaCha20:
		key, err := chacha20.HChaCha20(c.key[:], ct.iv)
		if err != nil {
			return nil, err
		}
		aead, err = chacha20poly1305.New(key)
		clear(key)
		if err != nil {
			return nil, err
		}
	default:
		return nil, ErrDecrypt
	}
	// A fresh slice: opening in place would overwrite the caller's input.
	return aead.Open(make([]byte, 0, len(ct.sealed)-tagSize), ct.nonce, ct.sealed, associatedData)
}
