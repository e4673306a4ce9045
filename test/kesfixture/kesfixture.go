// Package kesfixture reads a KES migration fixture set (see
// ../shared/fixtures/kes-migration/README.md): vectors.json (the keys as
// KES decoded them, ciphertext and HMAC vectors), manifest.json (MinIO's
// objects and the KES ciphertexts it stored) and the key files of
// keystore/, and imports that keystore into a Keep node through the import
// route. testnode.KESFixtureDir finds the set.
//
// Tests must not depend on the names or values of one particular set: they
// take every name, key and object from these files.
package kesfixture

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// Bytes is a standard base64 string of the fixture files; JSON null and ""
// both decode to nil.
type Bytes []byte

// UnmarshalJSON decodes a base64 string or null.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var s *string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	if s == nil || *s == "" {
		*b = nil
		return nil
	}
	v, err := base64.StdEncoding.DecodeString(*s)
	if err != nil {
		return fmt.Errorf("not standard base64: %w", err)
	}
	*b = v
	return nil
}

// Vectors is vectors.json.
type Vectors struct {
	APIKey      string       `json:"api_key"`     // the KES admin API key, kes:v1:…
	APIKeyK1    string       `json:"api_key_k1"`  // the same key spelled k1:…
	Identity    string       `json:"identity"`    // its identity as KES spells it (hex)
	IdentityH1  string       `json:"identity_h1"` // the same identity spelled h1:…
	Keys        []Key        `json:"keys"`
	Vectors     []Vector     `json:"vectors"`
	HMACVectors []HMACVector `json:"hmac_vectors"`
}

// Key is a key of the keystore as KES's own parser decoded it.
type Key struct {
	Name       string     `json:"name"`
	File       string     `json:"file"`        // relative to the set
	FileFormat string     `json:"file_format"` // protobuf-base64, json-v1, …
	Algorithm  string     `json:"algorithm"`   // AES256 or ChaCha20
	KeyBytes   Bytes      `json:"key_bytes"`
	HMACKey    Bytes      `json:"hmac_key"` // nil for JSON key files
	CreatedAt  *time.Time `json:"created_at"`
	CreatedBy  *string    `json:"created_by"`
}

// Vector is a ciphertext a KES server returned, with its plaintext.
type Vector struct {
	ID           string `json:"id"`
	Key          string `json:"key"`
	KeyAlgorithm string `json:"key_algorithm"`
	Endpoint     string `json:"endpoint"` // /v1/key/generate/ or /v1/key/encrypt/
	Encoding     string `json:"encoding"` // json, msgpack or raw
	Plaintext    Bytes  `json:"plaintext"`
	Context      Bytes  `json:"context"` // nil: no context
	Ciphertext   Bytes  `json:"ciphertext"`
}

// HMACVector is a KES /v1/key/hmac/ call and its answer: an HMAC, or the
// error KES sent (ExpectedError).
type HMACVector struct {
	Key           string         `json:"key"`
	Message       Bytes          `json:"message"`
	HMAC          Bytes          `json:"hmac"`
	ExpectedError *ExpectedError `json:"expected_error"`
}

// ExpectedError is the status and JSON body of a KES error reply.
type ExpectedError struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// Manifest is manifest.json.
type Manifest struct {
	MinIO struct {
		Module       string `json:"module"`
		Version      string `json:"version"` // the Go module version of the MinIO that wrote minio/
		RootUser     string `json:"root_user"`
		RootPassword string `json:"root_password"`
	} `json:"minio"`
	KMS struct {
		APIKey     string `json:"api_key"`     // MINIO_KMS_KES_API_KEY, kes:v1:…
		APIKeyK1   string `json:"api_key_k1"`  // the same key spelled k1:…
		DefaultKey string `json:"default_key"` // MINIO_KMS_KES_KEY_NAME when MinIO last ran
	} `json:"kms"`
	Buckets  []Bucket   `json:"buckets"`
	Objects  []Object   `json:"objects"`
	Internal []Internal `json:"minio_internal"`
}

// Bucket is a bucket of minio/.
type Bucket struct {
	Name              string `json:"name"`
	DefaultEncryption string `json:"default_encryption"` // SSE-S3 or none
}

// Object is an object of minio/ with the SHA-256 of its plaintext.
type Object struct {
	Bucket     string            `json:"bucket"`
	Name       string            `json:"name"`
	Size       int64             `json:"size"`
	SHA256     string            `json:"sha256"`     // hex
	Encryption string            `json:"encryption"` // SSE-S3, SSE-KMS or none
	KMSKey     string            `json:"kms_key"`
	KMSContext map[string]string `json:"kms_context"`
	Upload     string            `json:"upload"`
	ETag       string            `json:"etag"` // as the MinIO that wrote it served it
	KES        *Ciphertext       `json:"kes"`  // the sealed object key; nil if not encrypted
}

// Internal is a KES ciphertext of MinIO's own data (config, IAM).
type Internal struct {
	Path string `json:"path"`
	Ciphertext
}

// Ciphertext is a KES ciphertext MinIO stored, with the associated data
// MinIO sends when it decrypts it, and the plaintext KES returned.
type Ciphertext struct {
	Key        string `json:"key"`
	Encoding   string `json:"encoding"`
	Ciphertext Bytes  `json:"ciphertext"`
	Context    Bytes  `json:"context"`
	Plaintext  Bytes  `json:"plaintext"`
}

// NamedCiphertext is a Ciphertext with a name saying where it came from.
type NamedCiphertext struct {
	Name string // e.g. "objects[3] bucket/name", "minio_internal[0] .minio.sys/config/config.json"
	KES  Ciphertext
}

// Ciphertexts returns every KES ciphertext of the manifest: the object
// keys (objects[].kes) and MinIO's own (minio_internal[]).
func (m *Manifest) Ciphertexts() []NamedCiphertext {
	var cs []NamedCiphertext
	for i, o := range m.Objects {
		if o.KES != nil {
			cs = append(cs, NamedCiphertext{"objects[" + strconv.Itoa(i) + "] " + o.Bucket + "/" + o.Name, *o.KES})
		}
	}
	for i, in := range m.Internal {
		cs = append(cs, NamedCiphertext{"minio_internal[" + strconv.Itoa(i) + "] " + in.Path, in.Ciphertext})
	}
	return cs
}

// KeyNames returns, sorted, every key the manifest names: the default
// key, the SSE-KMS keys and the keys of every stored ciphertext. A MinIO
// serving the data directory must be allowed to use all of them.
func (m *Manifest) KeyNames() []string {
	var names []string
	if m.KMS.DefaultKey != "" {
		names = append(names, m.KMS.DefaultKey)
	}
	for _, o := range m.Objects {
		if o.KMSKey != "" {
			names = append(names, o.KMSKey)
		}
	}
	for _, c := range m.Ciphertexts() {
		names = append(names, c.KES.Key)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// LoadVectors reads dir/vectors.json. The test fails if it cannot be read,
// or holds no key or no vector: such a set would prove nothing.
func LoadVectors(t testing.TB, dir string) *Vectors {
	t.Helper()
	var v Vectors
	load(t, filepath.Join(dir, "vectors.json"), &v)
	if len(v.Keys) == 0 || len(v.Vectors) == 0 {
		t.Fatalf("%s/vectors.json has %d keys and %d vectors", dir, len(v.Keys), len(v.Vectors))
	}
	return &v
}

// LoadManifest reads dir/manifest.json. The test fails if it cannot be
// read, or lists no object.
func LoadManifest(t testing.TB, dir string) *Manifest {
	t.Helper()
	var m Manifest
	load(t, filepath.Join(dir, "manifest.json"), &m)
	if len(m.Objects) == 0 {
		t.Fatalf("%s/manifest.json lists no object", dir)
	}
	return &m
}

func load(t testing.TB, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("KES fixture set: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("KES fixture set: %s: %v", file, err)
	}
}

// KeyFile is a file of the keystore: the key's name and its bytes as on
// disk.
type KeyFile struct {
	Name    string
	Content []byte
}

// KeyFiles returns the regular files of dir/keystore, sorted by name. The
// test fails if there are none.
func KeyFiles(t testing.TB, dir string) []KeyFile {
	t.Helper()
	ks := filepath.Join(dir, "keystore")
	entries, err := os.ReadDir(ks)
	if err != nil {
		t.Fatalf("KES fixture set: %v", err)
	}
	var files []KeyFile
	for _, e := range entries { // sorted by name
		if !e.Type().IsRegular() {
			continue
		}
		content, err := os.ReadFile(filepath.Join(ks, e.Name()))
		if err != nil {
			t.Fatalf("KES fixture set: %v", err)
		}
		files = append(files, KeyFile{Name: e.Name(), Content: content})
	}
	if len(files) == 0 {
		t.Fatalf("KES fixture set: %s holds no key file", ks)
	}
	return files
}

// ImportResult is the reply of the import route for one key file.
type ImportResult struct {
	Name      string `json:"name"`
	Status    string `json:"status"` // imported, exists or new
	Format    string `json:"format"`
	Algorithm string `json:"algorithm"`
	HMAC      bool   `json:"hmac"`
}

// Import sends every key file to endpoint's import route, PUT
// /v1/kes/import/ENCLAVE/NAME (with ?dry-run=true if dryRun), with hc,
// which must present an identity allowed KEY:IMPORT. The test fails unless
// every file is answered with 200; the replies are returned by key name.
func Import(t testing.TB, hc *http.Client, endpoint, enclave string, files []KeyFile, dryRun bool) map[string]ImportResult {
	t.Helper()
	results := make(map[string]ImportResult, len(files))
	for _, f := range files {
		u := endpoint + "/v1/kes/import/" + url.PathEscape(enclave) + "/" + url.PathEscape(f.Name)
		if dryRun {
			u += "?dry-run=true"
		}
		status, body := Put(t, hc, u, f.Content)
		if status != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", u, status, body)
		}
		var r ImportResult
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("PUT %s: reply %s: %v", u, body, err)
		}
		if r.Name != f.Name {
			t.Fatalf("PUT %s: reply names key %q", u, r.Name)
		}
		results[f.Name] = r
	}
	return results
}

// Put sends body as application/octet-stream and returns the reply's
// status and body.
func Put(t testing.TB, hc *http.Client, u string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", u, err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("PUT %s: reading the reply: %v", u, err)
	}
	return resp.StatusCode, reply
}
