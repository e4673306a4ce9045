package kesformat

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	_ "google.golang.org/protobuf/types/known/timestamppb" // registers google/protobuf/timestamp.proto
)

// fuzzMaterial is the key of FuzzDecrypt; the committed seeds are
// ciphertexts under it, so it must not change.
var fuzzMaterial = bytes.Repeat([]byte{0x42}, KeySize)

// fuzzContext is the context of the valid seeds of FuzzDecrypt.
var fuzzContext = []byte("fuzz context")

func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte(`{"bytes":"QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="}`))
	msgType := keyVersionType(f)
	f.Fuzz(func(t *testing.T, content []byte) {
		k, err := ParseKeyFile("fuzz", content)
		if err != nil {
			if !errors.Is(err, ErrMalformedKeyFile) {
				t.Fatalf("error %v does not wrap ErrMalformedKeyFile", err)
			}
		} else {
			if len(k.Material) != KeySize || (k.HMACKey != nil && len(k.HMACKey) != KeySize) {
				t.Fatalf("key of %d bytes, HMAC key of %d bytes accepted", len(k.Material), len(k.HMACKey))
			}
			if k.Algorithm != crypto.AES256 && k.Algorithm != crypto.ChaCha20 {
				t.Fatalf("algorithm %q accepted", k.Algorithm)
			}
			if (k.Format == FormatProtobuf) == json.Valid(content) {
				t.Fatalf("format %s for content that is valid JSON: %v", k.Format, json.Valid(content))
			}
			if _, err := k.Cipher(); err != nil {
				t.Fatalf("parsed key has no cipher: %v", err)
			}
		}
		if json.Valid(content) || len(content) > MaxKeyFileSize {
			return
		}
		// The protobuf path must agree with the reference decoder,
		// proto.Unmarshal, followed by KES's checks.
		raw, b64err := base64.StdEncoding.DecodeString(string(content))
		if b64err != nil {
			return
		}
		want, wantErr := referenceProtobufKey(msgType, raw)
		switch {
		case (err == nil) != (wantErr == nil):
			t.Fatalf("ParseKeyFile: %v; proto.Unmarshal and KES's checks: %v", err, wantErr)
		case err == nil:
			if !bytes.Equal(k.Material, want.Material) || !bytes.Equal(k.HMACKey, want.HMACKey) || k.Algorithm != want.Algorithm || k.CreatedBy != want.CreatedBy || !k.CreatedAt.Equal(want.CreatedAt) {
				t.Fatalf("ParseKeyFile %+v, reference %+v", k, want)
			}
		}
	})
}

// keyVersionType builds KES's miniohq.kms.KeyVersion message type at run
// time, so that dynamicpb can decode with the reference protobuf rules.
func keyVersionType(tb testing.TB) protoreflect.MessageType {
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, msg string) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{
			Name:     proto.String(name),
			JsonName: proto.String(name),
			Number:   proto.Int32(num),
			Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			Type:     typ.Enum(),
		}
		if msg != "" {
			f.TypeName = proto.String(msg)
		}
		return f
	}
	const (
		tBytes  = descriptorpb.FieldDescriptorProto_TYPE_BYTES
		tUint32 = descriptorpb.FieldDescriptorProto_TYPE_UINT32
		tMsg    = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
		tString = descriptorpb.FieldDescriptorProto_TYPE_STRING
	)
	fd := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("kes/keyversion.proto"),
		Package:    proto.String("miniohq.kms"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/timestamp.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("SecretKey"), Field: []*descriptorpb.FieldDescriptorProto{field("Key", 1, tBytes, ""), field("Type", 2, tUint32, "")}},
			{Name: proto.String("HMACKey"), Field: []*descriptorpb.FieldDescriptorProto{field("Key", 1, tBytes, ""), field("Hash", 2, tUint32, "")}},
			{Name: proto.String("KeyVersion"), Field: []*descriptorpb.FieldDescriptorProto{
				field("Key", 1, tMsg, ".miniohq.kms.SecretKey"),
				field("HMACKey", 2, tMsg, ".miniohq.kms.HMACKey"),
				field("CreatedAt", 3, tMsg, ".google.protobuf.Timestamp"),
				field("CreatedBy", 4, tString, ""),
			}},
		},
	}
	file, err := protodesc.NewFile(fd, protoregistry.GlobalFiles)
	if err != nil {
		tb.Fatal(err)
	}
	return dynamicpb.NewMessageType(file.Messages().ByName("KeyVersion"))
}

// referenceProtobufKey decodes raw with proto.Unmarshal and applies the checks
// of KES's KeyVersion.UnmarshalPB.
func referenceProtobufKey(typ protoreflect.MessageType, raw []byte) (*Key, error) {
	m := typ.New()
	if err := proto.Unmarshal(raw, m.Interface()); err != nil {
		return nil, err
	}
	fields := m.Descriptor().Fields()
	get := func(m protoreflect.Message, name protoreflect.Name) protoreflect.Value {
		return m.Get(m.Descriptor().Fields().ByName(name))
	}
	sk, hk := get(m, "Key").Message(), get(m, "HMACKey").Message()
	k := &Key{Material: get(sk, "Key").Bytes(), HMACKey: get(hk, "Key").Bytes(), CreatedBy: get(m, "CreatedBy").String()}
	switch {
	case len(k.Material) != KeySize, len(k.HMACKey) != KeySize, get(hk, "Hash").Uint() != 1:
		return nil, errors.New("invalid key")
	}
	switch get(sk, "Type").Uint() {
	case 1:
		k.Algorithm = crypto.AES256
	case 2:
		k.Algorithm = crypto.ChaCha20
	default:
		return nil, errors.New("invalid key type")
	}
	if m.Has(fields.ByName("CreatedAt")) {
		ts := get(m, "CreatedAt").Message()
		k.CreatedAt = time.Unix(get(ts, "seconds").Int(), get(ts, "nanos").Int()).UTC()
	}
	return k, nil
}

func FuzzDecrypt(f *testing.F) {
	f.Add([]byte{}, []byte{})
	ciphers := make(map[crypto.KeyType]*Cipher)
	for _, alg := range []crypto.KeyType{crypto.AES256, crypto.ChaCha20} {
		c, err := NewCipher(alg, fuzzMaterial)
		if err != nil {
			f.Fatal(err)
		}
		ciphers[alg] = c
	}
	f.Fuzz(func(t *testing.T, ciphertext, context []byte) {
		if fast, ok := parseJSONFast(ciphertext); ok {
			slow, ok := parseJSONReflect(ciphertext)
			if !ok || !equalCiphertexts(fast, slow) {
				t.Fatalf("JSON fast path gives %+v, encoding/json %v %+v", fast, ok, slow)
			}
		}
		for alg, c := range ciphers {
			plaintext, err := c.Decrypt(ciphertext, context)
			if err != nil {
				if err != ErrDecrypt {
					t.Fatalf("%s: error %v, want exactly ErrDecrypt", alg, err)
				}
				continue
			}
			// What decrypts is a ciphertext KES would decrypt: its parts,
			// re-encoded raw, decrypt to the same plaintext.
			ct, ok := parseCiphertext(ciphertext)
			if !ok || ct.encoding != DetectEncoding(ciphertext) {
				t.Fatalf("%s: decrypts, but parses as %v/%s", alg, ok, DetectEncoding(ciphertext))
			}
			raw := append(append(bytes.Clone(ct.sealed), ct.iv...), ct.nonce...)
			again, err := c.Decrypt(raw, context)
			if err != nil || !bytes.Equal(again, plaintext) {
				t.Fatalf("%s: %s ciphertext decrypts, its raw form does not: %v", alg, ct.encoding, err)
			}
		}
	})
}

// equalCiphertexts reports whether a and b have the same parts.
func equalCiphertexts(a, b ciphertext) bool {
	return a.encoding == b.encoding && a.algorithm == b.algorithm && bytes.Equal(a.sealed, b.sealed) && bytes.Equal(a.iv, b.iv) && bytes.Equal(a.nonce, b.nonce)
}

// TestJSONFastPath checks that the JSON ciphertexts KES wrote, with and
// without "id", take the fast path and that it agrees with encoding/json.
func TestJSONFastPath(t *testing.T) {
	for _, alg := range []crypto.KeyType{crypto.AES256, crypto.ChaCha20} {
		ct := encryptKES(t, alg, fuzzMaterial, []byte("data key"), nil)
		withID := ct.encode(t, EncodingJSON, "")
		var m map[string]any
		if err := json.Unmarshal(withID, &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "id")
		withoutID, _ := json.Marshal(m) // sorted keys: another order, the slow path
		for _, b := range [][]byte{withID, bytes.Replace(withID, []byte(`"id":"00112233445566778899aabbccddeeff",`), nil, 1), withoutID} {
			slow, ok := parseJSONReflect(b)
			if !ok {
				t.Fatalf("encoding/json refuses %s", b)
			}
			if fast, ok := parseJSONFast(b); ok && !equalCiphertexts(fast, slow) {
				t.Fatalf("fast path differs on %s", b)
			}
		}
		if _, ok := parseJSONFast(withID); !ok {
			t.Errorf("%s: KES's JSON form does not take the fast path", alg)
		}
	}
}

// TestWriteFuzzCorpus writes the seed corpora of FuzzParseKeyFile and
// FuzzDecrypt when KEEP_WRITE_CORPUS is set; they are committed under
// testdata/fuzz.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("KEEP_WRITE_CORPUS") == "" {
		t.Skip("set KEEP_WRITE_CORPUS=1 to write the corpora")
	}
	hmacKey := bytes.Repeat([]byte{0x43}, KeySize)
	b64 := func(b []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(b)) }
	m := base64.StdEncoding.EncodeToString(fuzzMaterial)
	created := time.Date(2026, 12, 6, 10, 29, 14, 502183417, time.UTC)
	writeCorpus(t, "FuzzParseKeyFile", map[string][][]byte{
		"json_bytes":       {[]byte(`{"bytes":"` + m + `"}`)},
		"json_unversioned": {[]byte(`{"bytes":"` + m + `","algorithm":"XCHACHA20-POLY1305","created_at":"2026-12-06T10:29:14.50418986Z","created_by":"a3ce268ef7399b023486be32a99563421a3d690e795fda6641c3f29535dfb9d5"}`)},
		"json_v1":          {[]byte(`{"version":"v1","bytes":"` + m + `","algorithm":"ChaCha20","created_at":"2026-12-06T10:29:16.600854676Z","created_by":"a3ce268ef7399b023486be32a99563421a3d690e795fda6641c3f29535dfb9d5"}`)},
		"json_bad_alg":     {[]byte(`{"bytes":"` + m + `","algorithm":"AES128"}`)},
		"protobuf_aes":     {b64(protoKeyVersionBytes(fuzzMaterial, 1, hmacKey, 1, created, "a3ce268ef7399b023486be32a99563421a3d690e795fda6641c3f29535dfb9d5"))},
		"protobuf_chacha":  {b64(protoKeyVersionBytes(fuzzMaterial, 2, hmacKey, 1, created, "a3ce"))},
		"protobuf_no_hmac": {b64(protoKeyVersionBytes(fuzzMaterial, 1, nil, 0, time.Time{}, ""))},
		"protobuf_dup_key": {b64(append(protoKeyVersionBytes(fuzzMaterial, 1, hmacKey, 1, time.Time{}, ""), protowireBytes(nil, 1, protowireVarint(nil, 2, 2))...))},
	})
	seeds := map[string][][]byte{}
	for _, alg := range []crypto.KeyType{crypto.AES256, crypto.ChaCha20} {
		for _, enc := range []Encoding{EncodingJSON, EncodingMsgpack, EncodingRaw} {
			ct := encryptKES(t, alg, fuzzMaterial, []byte("a 32-byte data key for the seeds"), fuzzContext)
			seeds[string(alg)+"_"+string(enc)] = [][]byte{ct.encode(t, enc, ""), fuzzContext}
		}
	}
	for _, first := range []byte{'{', 0x95} {
		var b []byte
		for b == nil || b[0] != first {
			b = encryptKES(t, crypto.AES256, fuzzMaterial, []byte("first byte"), nil).encode(t, EncodingRaw, "")
		}
		seeds["raw_first_byte_"+strconv.Itoa(int(first))] = [][]byte{b, nil}
	}
	writeCorpus(t, "FuzzDecrypt", seeds)
}

// writeCorpus writes one seed file per entry of seeds, each holding the
// fuzz target's arguments.
func writeCorpus(t *testing.T, target string, seeds map[string][][]byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, args := range seeds {
		body := "go test fuzz v1\n"
		for _, a := range args {
			body += "[]byte(" + strconv.Quote(string(a)) + ")\n"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
