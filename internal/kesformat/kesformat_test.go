package kesformat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/tinylib/msgp/msgp"
	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/chacha20poly1305"
)

func TestFixtureKeyFiles(t *testing.T) {
	f, keys := loadFixture(t)
	for _, want := range f.Keys {
		t.Run(want.Name, func(t *testing.T) {
			k, ok := keys[want.Name]
			if !ok {
				t.Fatalf("vectors.json names key %q, the keystore has no file of that name", want.Name)
			}
			if k.Name != want.Name {
				t.Errorf("name %q, want %q", k.Name, want.Name)
			}
			if string(k.Format) != want.FileFormat {
				t.Errorf("format %q, want %q", k.Format, want.FileFormat)
			}
			if string(k.Algorithm) != want.Algorithm {
				t.Errorf("algorithm %q, want %q", k.Algorithm, want.Algorithm)
			}
			if !bytes.Equal(k.Material, want.KeyBytes) {
				t.Error("key material differs from key_bytes")
			}
			if !bytes.Equal(k.HMACKey, want.HMACKey) {
				t.Errorf("HMAC key differs from hmac_key (have one: %v, want one: %v)", k.HMACKey != nil, want.HMACKey != nil)
			}
			if want.CreatedAt != nil && !k.CreatedAt.Equal(*want.CreatedAt) {
				t.Errorf("created at %v, want %v", k.CreatedAt, *want.CreatedAt)
			}
			if want.CreatedAt == nil && !k.CreatedAt.IsZero() {
				t.Errorf("created at %v, want none", k.CreatedAt)
			}
			if want.CreatedBy != nil && k.CreatedBy != *want.CreatedBy {
				t.Errorf("created by %q, want %q", k.CreatedBy, *want.CreatedBy)
			}
		})
	}
}

func TestFixtureVectors(t *testing.T) {
	f, keys := loadFixture(t)
	for _, v := range f.Vectors {
		t.Run(v.ID, func(t *testing.T) {
			k, ok := keys[v.Key]
			if !ok {
				t.Fatalf("no key file for key %q", v.Key)
			}
			c, err := k.Cipher()
			if err != nil {
				t.Fatal(err)
			}
			if enc := DetectEncoding(v.Ciphertext); string(enc) != v.Encoding {
				t.Errorf("encoding detected as %s, want %s", enc, v.Encoding)
			}
			got, err := c.Decrypt(v.Ciphertext, v.Context)
			if err != nil {
				t.Fatalf("decrypt: %v", err)
			}
			if !bytes.Equal(got, v.Plaintext) {
				t.Fatal("plaintext differs")
			}
			wrong := append(bytes.Clone(v.Context), 'X')
			if _, err := c.Decrypt(v.Ciphertext, wrong); !errors.Is(err, ErrDecrypt) {
				t.Errorf("decrypt with a wrong context: %v, want ErrDecrypt", err)
			}
			if len(v.Context) > 0 {
				if _, err := c.Decrypt(v.Ciphertext, nil); !errors.Is(err, ErrDecrypt) {
					t.Errorf("decrypt without its context: %v, want ErrDecrypt", err)
				}
			}
			checkTampering(t, c, v.Ciphertext, v.Context, v.Plaintext)
		})
	}
}

// checkTampering flips every bit of a ciphertext one at a time. A raw
// ciphertext must then fail. A JSON or msgpack one must fail or, where the
// flip hit a field KES ignores (id, the case of a JSON name), give the same
// plaintext; and its parts, re-encoded raw, must decrypt and then fail on
// every flip.
func checkTampering(t *testing.T, c *Cipher, ciphertext, context, plaintext []byte) {
	t.Helper()
	ct, ok := parseCiphertext(ciphertext)
	if !ok {
		t.Fatal("ciphertext does not parse")
	}
	raw := append(append(bytes.Clone(ct.sealed), ct.iv...), ct.nonce...)
	if got, err := c.Decrypt(raw, context); err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("the parts of the ciphertext re-encoded raw do not decrypt: %v", err)
	}
	flips := func(b []byte, structured bool) {
		for i := range b {
			for bit := range 8 {
				b[i] ^= 1 << bit
				got, err := c.Decrypt(b, context)
				b[i] ^= 1 << bit
				switch {
				case err == nil && (!structured || !bytes.Equal(got, plaintext)):
					t.Fatalf("ciphertext with bit %d of byte %d flipped decrypts", bit, i)
				case err != nil && !errors.Is(err, ErrDecrypt):
					t.Fatalf("tampered ciphertext: %v, want ErrDecrypt", err)
				}
			}
		}
	}
	flips(raw, false)
	if ct.encoding != EncodingRaw {
		flips(bytes.Clone(ciphertext), true)
	}
	for _, n := range []int{0, 1, randSize, len(raw) - 1} {
		if n <= len(raw) {
			if _, err := c.Decrypt(raw[:n], context); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("ciphertext cut to %d bytes: %v, want ErrDecrypt", n, err)
			}
		}
	}
}

// TestFixtureManifest decrypts the KES ciphertexts MinIO stored in its data
// directory (object keys, its config and IAM data) with MinIO's contexts.
func TestFixtureManifest(t *testing.T) {
	_, keys := loadFixture(t)
	vs := loadManifestVectors(t)
	if len(vs) == 0 {
		t.Skip("manifest.json lists no KES ciphertexts")
	}
	for _, nv := range vs {
		name, v := nv.Name, nv.KES
		k, ok := keys[v.Key]
		if !ok {
			t.Errorf("%s: no key file for key %q", name, v.Key)
			continue
		}
		c, err := k.Cipher()
		if err != nil {
			t.Fatal(err)
		}
		if enc := DetectEncoding(v.Ciphertext); v.Encoding != "" && string(enc) != v.Encoding {
			t.Errorf("%s: encoding detected as %s, want %s", name, enc, v.Encoding)
		}
		got, err := c.Decrypt(v.Ciphertext, v.Context)
		if err != nil || !bytes.Equal(got, v.Plaintext) {
			t.Errorf("%s: decrypt: %v (plaintext equal: %v)", name, err, bytes.Equal(got, v.Plaintext))
		}
		if _, err := c.Decrypt(v.Ciphertext, append(bytes.Clone(v.Context), ' ')); err != ErrDecrypt {
			t.Errorf("%s: wrong context: %v, want ErrDecrypt", name, err)
		}
	}
}

func TestFixtureHMAC(t *testing.T) {
	f, keys := loadFixture(t)
	if len(f.HMACVectors) == 0 {
		t.Skip("fixture has no HMAC vectors")
	}
	for i, v := range f.HMACVectors {
		k, ok := keys[v.Key]
		if !ok {
			t.Fatalf("hmac_vectors[%d]: no key file for key %q", i, v.Key)
		}
		got, err := k.HMAC(v.Message)
		if v.ExpectedError != nil {
			if !errors.Is(err, ErrNoHMACKey) {
				t.Errorf("hmac_vectors[%d] (key %s): %v, want ErrNoHMACKey", i, v.Key, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("hmac_vectors[%d] (key %s): %v", i, v.Key, err)
		} else if !bytes.Equal(got, v.HMAC) {
			t.Errorf("hmac_vectors[%d] (key %s): HMAC differs", i, v.Key)
		}
	}
}

// encryptKES seals plaintext as KES does (SecretKey.Encrypt) and returns the
// parts; with it the tests cover the encodings and algorithms a fixture set
// may lack.
func encryptKES(t testing.TB, alg crypto.KeyType, key, plaintext, context []byte) ciphertext {
	t.Helper()
	random := make([]byte, randSize)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	iv, nonce := random[:ivSize], random[ivSize:]
	var aead cipher.AEAD
	switch alg {
	case crypto.AES256:
		mac := hmac.New(sha256.New, key)
		mac.Write(iv)
		block, err := aes.NewCipher(mac.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		aead, _ = cipher.NewGCM(block)
	case crypto.ChaCha20:
		k, err := chacha20.HChaCha20(key, iv)
		if err != nil {
			t.Fatal(err)
		}
		aead, _ = chacha20poly1305.New(k)
	}
	return ciphertext{algorithm: alg, sealed: aead.Seal(nil, nonce, plaintext, context), iv: iv, nonce: nonce}
}

// encode returns ct in encoding enc, as the KES versions that made it did;
// algName overrides the algorithm name written into JSON and msgpack.
func (ct ciphertext) encode(t testing.TB, enc Encoding, algName string) []byte {
	t.Helper()
	switch enc {
	case EncodingJSON:
		if algName == "" {
			algName = map[crypto.KeyType]string{crypto.AES256: jsonAES256, crypto.ChaCha20: jsonChaCha20}[ct.algorithm]
		}
		// The field order of KES v0.19.1's Key.Wrap.
		b, err := json.Marshal(struct {
			AEAD  string `json:"aead"`
			ID    string `json:"id"`
			IV    []byte `json:"iv"`
			Nonce []byte `json:"nonce"`
			Bytes []byte `json:"bytes"`
		}{algName, "00112233445566778899aabbccddeeff", ct.iv, ct.nonce, ct.sealed})
		if err != nil {
			t.Fatal(err)
		}
		return b
	case EncodingMsgpack:
		if algName == "" {
			algName = map[crypto.KeyType]string{crypto.AES256: "AES256-GCM_SHA256", crypto.ChaCha20: "XCHACHA20-POLY1305"}[ct.algorithm]
		}
		b := msgp.AppendArrayHeader(nil, 5)
		b = msgp.AppendString(b, algName)
		b = msgp.AppendString(b, "00112233445566778899aabbccddeeff")
		b = msgp.AppendBytes(b, ct.iv)
		b = msgp.AppendBytes(b, ct.nonce)
		return msgp.AppendBytes(b, ct.sealed)
	default:
		return append(append(bytes.Clone(ct.sealed), ct.iv...), ct.nonce...)
	}
}

func TestRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	for _, alg := range []crypto.KeyType{crypto.AES256, crypto.ChaCha20} {
		c, err := NewCipher(alg, key)
		if err != nil {
			t.Fatal(err)
		}
		for _, enc := range []Encoding{EncodingJSON, EncodingMsgpack, EncodingRaw} {
			for _, size := range []int{0, 1, 32, 1024} {
				plaintext := bytes.Repeat([]byte{'p'}, size)
				context := []byte("bucket/object")
				b := encryptKES(t, alg, key, plaintext, context).encode(t, enc, "")
				if got := DetectEncoding(b); got != enc {
					t.Errorf("%s %s: detected %s", alg, enc, got)
				}
				got, err := c.Decrypt(b, context)
				if err != nil || !bytes.Equal(got, plaintext) {
					t.Fatalf("%s %s %d bytes: %v", alg, enc, size, err)
				}
				if _, err := c.Decrypt(b, []byte("bucket/other")); err != ErrDecrypt {
					t.Errorf("%s %s: wrong context: %v, want ErrDecrypt", alg, enc, err)
				}
			}
		}
	}
}

// TestRawFirstByte checks that raw ciphertexts starting with the first byte
// of a JSON or msgpack ciphertext decrypt: the encoding is decided by a full
// parse, as KES does.
func TestRawFirstByte(t *testing.T) {
	key := bytes.Repeat([]byte{9}, KeySize)
	c, err := NewCipher(crypto.AES256, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, first := range []byte{'{', 0x95} {
		var b []byte
		for b == nil || b[0] != first {
			b = encryptKES(t, crypto.AES256, key, []byte("data key"), nil).encode(t, EncodingRaw, "")
		}
		if enc := DetectEncoding(b); enc != EncodingRaw {
			t.Errorf("raw ciphertext starting with %#x detected as %s", first, enc)
		}
		if got, err := c.Decrypt(b, nil); err != nil || string(got) != "data key" {
			t.Errorf("raw ciphertext starting with %#x: %v", first, err)
		}
	}
}

// TestLegacyAlgorithm checks the one place Keep does better than KES: a key
// whose file names no algorithm decrypts a legacy ciphertext made with
// ChaCha20 (old KES on a CPU without AES instructions), while a key with an
// explicit algorithm keeps KES's rule of using only its own.
func TestLegacyAlgorithm(t *testing.T) {
	material := bytes.Repeat([]byte{3}, KeySize)
	content, _ := json.Marshal(map[string]any{"bytes": material})
	implicit, err := ParseKeyFile("old", content)
	if err != nil {
		t.Fatal(err)
	}
	if !implicit.AlgorithmImplicit || implicit.Algorithm != crypto.AES256 || implicit.Format != FormatJSONBytes {
		t.Fatalf("{\"bytes\"} key: algorithm %s (implicit %v), format %s", implicit.Algorithm, implicit.AlgorithmImplicit, implicit.Format)
	}
	content, _ = json.Marshal(map[string]any{"bytes": material, "algorithm": "AES256"})
	explicit, err := ParseKeyFile("new", content)
	if err != nil {
		t.Fatal(err)
	}
	ci, _ := implicit.Cipher()
	ce, _ := explicit.Cipher()
	for _, enc := range []Encoding{EncodingJSON, EncodingMsgpack} {
		b := encryptKES(t, crypto.ChaCha20, material, []byte("k"), nil).encode(t, enc, "")
		if _, err := ci.Decrypt(b, nil); err != nil {
			t.Errorf("%s ChaCha20 ciphertext of a key without algorithm: %v", enc, err)
		}
		if _, err := ce.Decrypt(b, nil); err != ErrDecrypt {
			t.Errorf("%s ChaCha20 ciphertext of an AES256 key: %v, want ErrDecrypt", enc, err)
		}
	}
	// A raw ciphertext names no algorithm: only the key's is used.
	b := encryptKES(t, crypto.ChaCha20, material, []byte("k"), nil).encode(t, EncodingRaw, "")
	if _, err := ci.Decrypt(b, nil); err != ErrDecrypt {
		t.Errorf("raw ChaCha20 ciphertext of a key without algorithm: %v, want ErrDecrypt", err)
	}
}

// TestStructuredNotQuiteValid checks that a JSON or msgpack ciphertext KES
// does not accept as such (unknown algorithm name, wrong iv size, trailing
// bytes) is taken as raw and therefore fails, as in KES.
func TestStructuredNotQuiteValid(t *testing.T) {
	key := bytes.Repeat([]byte{5}, KeySize)
	c, _ := NewCipher(crypto.AES256, key)
	ct := encryptKES(t, crypto.AES256, key, []byte("x"), nil)
	short := ct
	short.iv = ct.iv[:ivSize-1]
	for name, b := range map[string][]byte{
		"json unknown aead":     ct.encode(t, EncodingJSON, "AES256"),
		"msgpack unknown alg":   ct.encode(t, EncodingMsgpack, "AES-256-GCM-HMAC-SHA-256"),
		"msgpack trailing byte": append(ct.encode(t, EncodingMsgpack, ""), 0),
		"msgpack short iv":      short.encode(t, EncodingMsgpack, ""),
		"json short iv":         short.encode(t, EncodingJSON, ""),
	} {
		if enc := DetectEncoding(b); enc != EncodingRaw {
			t.Errorf("%s: detected %s, want raw", name, enc)
		}
		if _, err := c.Decrypt(b, nil); err != ErrDecrypt {
			t.Errorf("%s: %v, want ErrDecrypt", name, err)
		}
	}
}

func TestHMAC(t *testing.T) {
	// RFC 4231 has no 32-byte-key case; compare with crypto/hmac directly.
	key := bytes.Repeat([]byte{1}, KeySize)
	want := hmac.New(sha256.New, key)
	want.Write([]byte("root access key"))
	got, err := (&Key{Name: "k", HMACKey: key}).HMAC([]byte("root access key"))
	if err != nil || !bytes.Equal(got, want.Sum(nil)) {
		t.Fatalf("HMAC: %x, %v", got, err)
	}
	if _, err := (&Key{Name: "k"}).HMAC(nil); !errors.Is(err, ErrNoHMACKey) {
		t.Errorf("HMAC without HMAC key: %v", err)
	}
	if _, err := HMAC(key[:31], nil); err == nil {
		t.Error("HMAC with a 31-byte key succeeded")
	}
}

func TestMalformedKeyFiles(t *testing.T) {
	material := bytes.Repeat([]byte{0xAB}, KeySize)
	hmacKey := bytes.Repeat([]byte{0xCD}, KeySize)
	b64m := base64.StdEncoding.EncodeToString(material)
	pb := func(parts ...[]byte) []byte {
		return []byte(base64.StdEncoding.EncodeToString(bytes.Join(parts, nil)))
	}
	valid := protoKeyVersionBytes(material, 1, hmacKey, 1, time.Unix(1796552958, 5), "a3ce")
	if k, err := ParseKeyFile("k", []byte(base64.StdEncoding.EncodeToString(valid))); err != nil || k.Algorithm != crypto.AES256 || !bytes.Equal(k.HMACKey, hmacKey) || k.CreatedAt.Unix() != 1796552958 || k.CreatedBy != "a3ce" {
		t.Fatalf("valid protobuf key: %+v, %v", k, err)
	}
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "empty"},
		{"json short key", `{"bytes":"` + base64.StdEncoding.EncodeToString(material[:31]) + `"}`, "31 bytes, want 32"},
		{"json no key", `{"algorithm":"AES256"}`, "0 bytes, want 32"},
		{"json bad algorithm", `{"bytes":"` + b64m + `","algorithm":"AES128"}`, `unsupported algorithm "AES128"`},
		{"json bad base64", `{"bytes":"` + b64m[:10] + `!` + b64m[11:] + `"}`, "not standard base64"},
		{"json bytes not a string", `{"bytes":true}`, `field "bytes" has the wrong type`},
		{"json array", `["` + b64m + `"]`, "not a JSON object"},
		{"json bad created_at", `{"bytes":"` + b64m + `","created_at":"yesterday"}`, "created_at"},
		{"not base64", "this is not a key", "neither JSON nor standard base64"},
		{"json syntax error", `{"bytes":"` + b64m + `"`, "neither JSON nor standard base64"},
		{"protobuf truncated", string(pb(valid[:len(valid)-3])), "invalid protobuf"},
		{"protobuf no key", string(pb(valid[38:])), "no secret key"},
		{"protobuf no hmac key", string(pb(protoKeyVersionBytes(material, 1, nil, 0, time.Time{}, ""))), "no HMAC key"},
		{"protobuf key type 3", string(pb(protoKeyVersionBytes(material, 3, hmacKey, 1, time.Time{}, ""))), "type 3"},
		{"protobuf hash 2", string(pb(protoKeyVersionBytes(material, 1, hmacKey, 2, time.Time{}, ""))), "hash 2"},
		{"protobuf short hmac key", string(pb(protoKeyVersionBytes(material, 1, hmacKey[:16], 1, time.Time{}, ""))), "HMAC key is 16 bytes"},
		{"protobuf bad utf8", string(pb(protoKeyVersionBytes(material, 1, hmacKey, 1, time.Time{}, "\xff"))), "UTF-8"},
		{"too large", `{"bytes":"` + b64m + `","x":"` + strings.Repeat("a", MaxKeyFileSize) + `"}`, "KES reads at most"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKeyFile("my-key", []byte(tc.content))
			if err == nil {
				t.Fatalf("accepted: %+v", k)
			}
			if !errors.Is(err, ErrMalformedKeyFile) {
				t.Errorf("%v does not wrap ErrMalformedKeyFile", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, `"my-key"`) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not name the key and %q", msg, tc.want)
			}
			for _, secret := range []string{b64m, b64m[:8], hex.EncodeToString(material[:4]), string(material[:4]), hex.EncodeToString(hmacKey[:4]), string(hmacKey[:4])} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q contains key material", msg)
				}
			}
		})
	}
}

// protoKeyVersionBytes encodes a KES KeyVersion protobuf message; a nil
// hmacKey leaves the HMAC key out, a zero time the creation time.
func protoKeyVersionBytes(key []byte, keyType uint64, hmacKey []byte, hash uint64, createdAt time.Time, createdBy string) []byte {
	var sk, hk, ts, kv []byte
	sk = protowireBytes(sk, 1, key)
	sk = protowireVarint(sk, 2, keyType)
	kv = protowireBytes(kv, 1, sk)
	if hmacKey != nil {
		hk = protowireBytes(hk, 1, hmacKey)
		hk = protowireVarint(hk, 2, hash)
		kv = protowireBytes(kv, 2, hk)
	}
	if !createdAt.IsZero() {
		ts = protowireVarint(ts, 1, uint64(createdAt.Unix()))
		ts = protowireVarint(ts, 2, uint64(createdAt.Nanosecond()))
		kv = protowireBytes(kv, 3, ts)
	}
	if createdBy != "" {
		kv = protowireBytes(kv, 4, []byte(createdBy))
	}
	return kv
}
