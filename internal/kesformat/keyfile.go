package kesformat

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/keep-kms/keep/internal/crypto"
	"google.golang.org/protobuf/encoding/protowire"
)

// KeySize is the length in bytes of KES key material and HMAC keys.
const KeySize = 32

// MaxKeyFileSize is the largest key file KES reads (1 MiB); a larger file was
// not written by KES, so it is refused rather than parsed.
const MaxKeyFileSize = 1 << 20

// ErrMalformedKeyFile is wrapped by every error of ParseKeyFile, so that an
// importer can tell a bad file from an I/O or server error.
var ErrMalformedKeyFile = errors.New("malformed KES key file")

// Format names one of the on-disk formats of a KES key file; the values are
// those of the fixture's vectors.json (file_format).
type Format string

// The key file formats KES has written, oldest first.
const (
	// FormatJSONBytes is {"bytes":…}, written by KES up to v0.19.1.
	FormatJSONBytes Format = "json-bytes"
	// FormatJSONUnversioned is {"bytes","algorithm","created_at","created_by"},
	// written by KES v0.19.2 to v0.22.2.
	FormatJSONUnversioned Format = "json-unversioned"
	// FormatJSONV1 is the same with "version":"v1", written by KES v0.22.3 to
	// 2024-01-11T13-09-29Z.
	FormatJSONV1 Format = "json-v1"
	// FormatProtobuf is standard base64 of a protobuf KeyVersion message,
	// written since 2024-02-29 (including 63649d0); only it has an HMAC key.
	FormatProtobuf Format = "protobuf-base64"
)

// Key is one key of a KES keystore as its key file describes it.
type Key struct {
	// Name is the key name (in an fs keystore, the file name).
	Name string
	// Format is the on-disk format the key was read from.
	Format Format
	// Algorithm is AES256 or ChaCha20, the algorithm KES 63649d0 uses for
	// every ciphertext of this key.
	Algorithm crypto.KeyType
	// AlgorithmImplicit reports that the file names no algorithm (JSON files
	// of keys created before KES knew algorithms). KES then uses AES256, but
	// the KES versions that wrote such keys picked the AEAD per ciphertext, so
	// a Cipher of such a key also honours the algorithm a structured
	// ciphertext names (see Cipher.Decrypt).
	AlgorithmImplicit bool
	// Material is the 32 bytes of key material.
	Material []byte
	// HMACKey is the 32-byte HMAC-SHA256 key, nil if the key has none (every
	// JSON key file); KES answers "key does not support HMAC" for those.
	HMACKey []byte
	// CreatedAt is when the key was created, the zero time if the file does
	// not say.
	CreatedAt time.Time
	// CreatedBy is the KES identity (lowercase hex) that created the key,
	// empty if the file does not say.
	CreatedBy string
}

// ParseKeyFile parses the content of the KES key file of the key name. Like
// KES, it takes content that is valid JSON as one of the JSON formats and
// anything else as base64 protobuf. Errors wrap ErrMalformedKeyFile, name the
// key and what is wrong, and never contain key material.
func ParseKeyFile(name string, content []byte) (*Key, error) {
	k, err := parseKeyFile(content)
	if err != nil {
		return nil, fmt.Errorf("kesformat: key %q: %w: %s", name, ErrMalformedKeyFile, err)
	}
	k.Name = name
	return k, nil
}

func parseKeyFile(content []byte) (*Key, error) {
	if len(content) > MaxKeyFileSize {
		return nil, fmt.Errorf("file is %d bytes, KES reads at most %d", len(content), MaxKeyFileSize)
	}
	if len(bytes.TrimSpace(content)) == 0 {
		return nil, errors.New("file is empty")
	}
	if json.Valid(content) {
		return parseJSONKey(content)
	}
	return parseProtobufKey(content)
}

// parseJSONKey reads the JSON formats with the field names and types of KES's
// ParseKeyVersion (encoding/json: case-insensitive names, unknown fields
// ignored), so that exactly the files KES accepts are accepted.
func parseJSONKey(content []byte) (*Key, error) {
	var v struct {
		Bytes     []byte    `json:"bytes"`
		Algorithm string    `json:"algorithm"`
		CreatedAt time.Time `json:"created_at"`
		CreatedBy string    `json:"created_by"`
	}
	if err := json.Unmarshal(content, &v); err != nil {
		return nil, fmt.Errorf("invalid JSON key: %s", jsonErrorText(err))
	}
	k := &Key{Format: jsonFormat(content)}
	switch v.Algorithm {
	case "":
		k.Algorithm, k.AlgorithmImplicit = crypto.AES256, true
	case "AES256", "AES256-GCM_SHA256":
		k.Algorithm = crypto.AES256
	case "ChaCha20", "XCHACHA20-POLY1305":
		k.Algorithm = crypto.ChaCha20
	default:
		return nil, fmt.Errorf("unsupported algorithm %s", quoteShort(v.Algorithm))
	}
	if len(v.Bytes) != KeySize {
		return nil, fmt.Errorf("key material (\"bytes\") is %d bytes, want %d", len(v.Bytes), KeySize)
	}
	k.Material = v.Bytes
	k.CreatedAt = v.CreatedAt
	k.CreatedBy = v.CreatedBy
	return k, nil
}

// jsonErrorText describes a JSON decoding error without quoting the input:
// encoding/json's messages may echo a literal of the file.
func jsonErrorText(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return fmt.Sprintf("not a JSON object (%s)", typeErr.Type)
		}
		return fmt.Sprintf("field %q has the wrong type, want %s", typeErr.Field, typeErr.Type)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("syntax error at offset %d", syntaxErr.Offset)
	}
	var timeErr *time.ParseError
	if errors.As(err, &timeErr) {
		return "\"created_at\" is not an RFC 3339 time"
	}
	// base64 errors of "bytes" say only the offset of the bad character.
	var b64Err base64.CorruptInputError
	if errors.As(err, &b64Err) {
		return fmt.Sprintf("\"bytes\" is not standard base64 (bad character at offset %d)", int64(b64Err))
	}
	return "cannot decode"
}

// jsonFormat tells the JSON variants apart the way the fixture names them;
// KES itself does not distinguish them, so this is information only.
func jsonFormat(content []byte) Format {
	var fields map[string]json.RawMessage
	if json.Unmarshal(content, &fields) != nil {
		return FormatJSONUnversioned
	}
	if _, ok := fields["version"]; ok {
		return FormatJSONV1
	}
	if len(fields) == 1 {
		return FormatJSONBytes
	}
	return FormatJSONUnversioned
}

// Protobuf field numbers of KES's miniohq.kms.KeyVersion and its parts.
const (
	fieldKeyVersionKey       = 1 // SecretKey
	fieldKeyVersionHMACKey   = 2 // HMACKey
	fieldKeyVersionCreatedAt = 3 // google.protobuf.Timestamp
	fieldKeyVersionCreatedBy = 4 // string

	fieldSecretKeyKey  = 1 // bytes
	fieldSecretKeyType = 2 // uint32: 1 AES256, 2 ChaCha20
	fieldHMACKeyKey    = 1 // bytes
	fieldHMACKeyHash   = 2 // uint32: 1 SHA256

	fieldTimestampSeconds = 1 // int64
	fieldTimestampNanos   = 2 // int32
)

// protoKeyVersion collects the fields of a KeyVersion message as
// proto.Unmarshal would: the last scalar wins, and a message field that occurs
// more than once is merged.
type protoKeyVersion struct {
	key, hmacKey       []byte
	keyType, hmacHash  uint32
	seconds            int64
	nanos              int32
	hasKey, hasHMACKey bool
	hasCreatedAt       bool
	createdBy          string
}

// parseProtobufKey reads the base64 protobuf format with the checks of KES's
// KeyVersion.UnmarshalPB: a 32-byte key of type 1 or 2 and a 32-byte HMAC key
// of hash 1 are required.
func parseProtobufKey(content []byte) (*Key, error) {
	// KES decodes with base64.StdEncoding, which skips '\r' and '\n'.
	raw, err := base64.StdEncoding.DecodeString(string(content))
	if err != nil {
		var b64Err base64.CorruptInputError
		if errors.As(err, &b64Err) {
			return nil, fmt.Errorf("neither JSON nor standard base64 (bad character at offset %d)", int64(b64Err))
		}
		return nil, errors.New("neither JSON nor standard base64")
	}
	var v protoKeyVersion
	if err := v.unmarshal(raw); err != nil {
		return nil, fmt.Errorf("invalid protobuf KeyVersion: %s", err)
	}
	k := &Key{Format: FormatProtobuf}
	switch {
	case !v.hasKey:
		return nil, errors.New("protobuf KeyVersion has no secret key")
	case len(v.key) != KeySize:
		return nil, fmt.Errorf("secret key is %d bytes, want %d", len(v.key), KeySize)
	}
	switch v.keyType {
	case 1:
		k.Algorithm = crypto.AES256
	case 2:
		k.Algorithm = crypto.ChaCha20
	default:
		return nil, fmt.Errorf("secret key type %d is not 1 (AES256) or 2 (ChaCha20)", v.keyType)
	}
	switch {
	case !v.hasHMACKey:
		return nil, errors.New("protobuf KeyVersion has no HMAC key")
	case len(v.hmacKey) != KeySize:
		return nil, fmt.Errorf("HMAC key is %d bytes, want %d", len(v.hmacKey), KeySize)
	case v.hmacHash != 1:
		return nil, fmt.Errorf("HMAC key hash %d is not 1 (SHA256)", v.hmacHash)
	}
	k.Material, k.HMACKey = v.key, v.hmacKey
	if v.hasCreatedAt {
		k.CreatedAt = time.Unix(v.seconds, int64(v.nanos)).UTC()
	}
	k.CreatedBy = v.createdBy
	return k, nil
}

func (v *protoKeyVersion) unmarshal(b []byte) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil // proto.Unmarshal keeps a field of the wrong wire type as unknown
		}
		switch num {
		case fieldKeyVersionKey:
			v.hasKey = true
			return eachField(val, func(num protowire.Number, typ protowire.Type, val []byte, x uint64) error {
				switch {
				case num == fieldSecretKeyKey && typ == protowire.BytesType:
					v.key = val
				case num == fieldSecretKeyType && typ == protowire.VarintType:
					v.keyType = uint32(x) // #nosec G115 -- protobuf truncates a varint to the field's width, as proto.Unmarshal does
				}
				return nil
			})
		case fieldKeyVersionHMACKey:
			v.hasHMACKey = true
			return eachField(val, func(num protowire.Number, typ protowire.Type, val []byte, x uint64) error {
				switch {
				case num == fieldHMACKeyKey && typ == protowire.BytesType:
					v.hmacKey = val
				case num == fieldHMACKeyHash && typ == protowire.VarintType:
					v.hmacHash = uint32(x) // #nosec G115 -- protobuf truncates a varint to the field's width, as proto.Unmarshal does
				}
				return nil
			})
		case fieldKeyVersionCreatedAt:
			v.hasCreatedAt = true
			return eachField(val, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
				switch {
				case num == fieldTimestampSeconds && typ == protowire.VarintType:
					v.seconds = int64(x) // #nosec G115 -- protobuf truncates a varint to the field's width, as proto.Unmarshal does
				case num == fieldTimestampNanos && typ == protowire.VarintType:
					v.nanos = int32(x) // #nosec G115 -- protobuf truncates a varint to the field's width, as proto.Unmarshal does
				}
				return nil
			})
		case fieldKeyVersionCreatedBy:
			// proto3 strings must be UTF-8; proto.Unmarshal refuses others.
			if !utf8.Valid(val) {
				return errors.New("created_by is not valid UTF-8")
			}
			v.createdBy = string(val)
		}
		return nil
	})
}

// eachField calls fn for every field of the protobuf message b, with the
// content of length-delimited fields in val and the value of varints in x;
// other fields are skipped. A truncated or invalid encoding is an error.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, val []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad field tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		var (
			val []byte
			x   uint64
		)
		switch typ {
		case protowire.BytesType:
			val, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, val, x); err != nil {
			return err
		}
	}
	return nil
}

// quoteShort quotes s for an error message, cut to a length that identifies
// a wrong value without copying a whole field into logs.
func quoteShort(s string) string {
	const limit = 32
	if len(s) > limit {
		return fmt.Sprintf("%q…", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}
