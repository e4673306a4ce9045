package kesformat

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/keep-kms/keep/test/testnode"
)

// fixtureDir returns the fixture set's directory, or skips the test if there
// is none: the set is shared test data, not part of the repository.
func fixtureDir(t testing.TB) string {
	t.Helper()
	dir, err := testnode.KESFixtures()
	if err != nil {
		t.Skip(err)
	}
	return dir
}

// b64 is a base64 string of vectors.json that decodes to bytes; JSON null and
// "" both decode to nil.
type b64 []byte

func (b *b64) UnmarshalJSON(data []byte) error {
	var s *string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	if s == nil || *s == "" {
		*b = nil
		return nil
	}
	v, err := base64.StdEncoding.DecodeString(*s)
	*b = v
	return err
}

// fixture is the part of vectors.json the tests use.
type fixture struct {
	Keys []struct {
		Name       string     `json:"name"`
		File       string     `json:"file"`
		FileFormat string     `json:"file_format"`
		Algorithm  string     `json:"algorithm"`
		KeyBytes   b64        `json:"key_bytes"`
		HMACKey    b64        `json:"hmac_key"`
		CreatedAt  *time.Time `json:"created_at"`
		CreatedBy  *string    `json:"created_by"`
	} `json:"keys"`
	Vectors []struct {
		ID         string `json:"id"`
		Key        string `json:"key"`
		Encoding   string `json:"encoding"`
		Plaintext  b64    `json:"plaintext"`
		Context    b64    `json:"context"`
		Ciphertext b64    `json:"ciphertext"`
	} `json:"vectors"`
	HMACVectors []struct {
		Key           string          `json:"key"`
		Message       b64             `json:"message"`
		HMAC          b64             `json:"hmac"`
		ExpectedError json.RawMessage `json:"expected_error"`
	} `json:"hmac_vectors"`
}

// loadFixture reads vectors.json and parses every file of keystore/.
func loadFixture(t testing.TB) (*fixture, map[string]*Key) {
	t.Helper()
	dir := fixtureDir(t)
	data, err := os.ReadFile(filepath.Join(dir, "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("vectors.json: %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "keystore"))
	if err != nil {
		t.Fatal(err)
	}
	keys := make(map[string]*Key)
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		content, err := os.ReadFile(filepath.Join(dir, "keystore", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseKeyFile(e.Name(), content)
		if err != nil {
			t.Fatalf("key file written by KES refused: %v", err)
		}
		keys[e.Name()] = k
	}
	if len(keys) == 0 || len(f.Vectors) == 0 {
		t.Fatalf("fixture %s has %d key files and %d vectors", dir, len(keys), len(f.Vectors))
	}
	return &f, keys
}

// manifestVector is a KES ciphertext MinIO stored, from manifest.json
// (objects[].kes and minio_internal[]).
type manifestVector struct {
	Key        string `json:"key"`
	Encoding   string `json:"encoding"`
	Ciphertext b64    `json:"ciphertext"`
	Context    b64    `json:"context"`
	Plaintext  b64    `json:"plaintext"`
}

// loadManifestVectors returns the KES ciphertexts of manifest.json by a
// name for the test, or skips if the set has no manifest.
func loadManifestVectors(t testing.TB) map[string]manifestVector {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir(t), "manifest.json"))
	if err != nil {
		t.Skipf("fixture set has no manifest.json: %v", err)
	}
	var m struct {
		Objects []struct {
			Bucket string          `json:"bucket"`
			Object string          `json:"name"`
			KES    *manifestVector `json:"kes"`
		} `json:"objects"`
		Internal []struct {
			Path string `json:"path"`
			manifestVector
		} `json:"minio_internal"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	vs := make(map[string]manifestVector)
	for i, o := range m.Objects {
		if o.KES != nil {
			vs["objects["+strconv.Itoa(i)+"] "+o.Bucket+"/"+o.Object] = *o.KES
		}
	}
	for i, in := range m.Internal {
		vs["minio_internal["+strconv.Itoa(i)+"] "+in.Path] = in.manifestVector
	}
	return vs
}
