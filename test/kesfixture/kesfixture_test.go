package kesfixture

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/keep-kms/keep/test/testnode"
)

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []byte
		wantErr bool
	}{
		{`null`, nil, false},
		{`""`, nil, false},
		{`"AAEC"`, []byte{0, 1, 2}, false},
		{`"AAE="`, []byte{0, 1}, false},
		{`"AAE"`, nil, true},   // no padding: KES writes standard base64
		{`"AA-_"`, nil, true},  // URL alphabet
		{`12`, nil, true},      // not a string
		{`"AA E="`, nil, true}, // space
	} {
		var b Bytes
		err := json.Unmarshal([]byte(tc.in), &b)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: error %v, want error: %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && !bytes.Equal(b, tc.want) {
			t.Errorf("%s: %x, want %x", tc.in, []byte(b), tc.want)
		}
	}
}

func TestLoadBroken(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "keystore"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"vectors.json":  `{"keys":[{"name":"k"}],"vectors":[]}`,
		"manifest.json": `{"objects":[]}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Each loader must fail on a set that proves nothing.
	for name, load := range map[string]func(testing.TB){
		"LoadVectors without vectors":   func(tb testing.TB) { LoadVectors(tb, dir) },
		"LoadManifest without objects":  func(tb testing.TB) { LoadManifest(tb, dir) },
		"KeyFiles of an empty keystore": func(tb testing.TB) { KeyFiles(tb, dir) },
		"LoadVectors of a missing set":  func(tb testing.TB) { LoadVectors(tb, filepath.Join(dir, "nope")) },
	} {
		if !fails(load) {
			t.Errorf("%s did not fail", name)
		}
	}
}

// fails reports whether f fails the test it is given.
func fails(f func(testing.TB)) bool {
	r := &recorder{}
	done := make(chan struct{})
	go func() { // Fatal ends the goroutine
		defer close(done)
		f(r)
	}()
	<-done
	return r.failed
}

// recorder is a testing.TB that records a failure and ends the goroutine
// on Fatal, as testing.T does.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(string, ...any) {
	r.failed = true
	runtime.Goexit()
}

// TestSharedSet reads the shared set (or KEEP_KES_FIXTURES) and checks that
// its three parts agree: every key of vectors.json and of the manifest has
// a key file.
func TestSharedSet(t *testing.T) {
	dir := testnode.KESFixtureDir(t)
	v, m, files := LoadVectors(t, dir), LoadManifest(t, dir), KeyFiles(t, dir)
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	for _, k := range v.Keys {
		if !slices.Contains(names, k.Name) || len(k.KeyBytes) != 32 {
			t.Errorf("vectors.json key %q: no key file, or %d key bytes", k.Name, len(k.KeyBytes))
		}
	}
	for _, vec := range v.Vectors {
		if !slices.Contains(names, vec.Key) || len(vec.Ciphertext) == 0 {
			t.Errorf("vector %s: key %q has no key file, or no ciphertext", vec.ID, vec.Key)
		}
	}
	for _, k := range m.KeyNames() {
		if !slices.Contains(names, k) {
			t.Errorf("manifest.json names key %q, which has no key file", k)
		}
	}
	if !slices.Contains(m.KeyNames(), m.KMS.DefaultKey) || m.KMS.DefaultKey == "" {
		t.Errorf("manifest.json: default key %q missing from KeyNames %v", m.KMS.DefaultKey, m.KeyNames())
	}
	cs := m.Ciphertexts()
	encrypted := 0
	for _, o := range m.Objects {
		if o.KES != nil {
			encrypted++
		}
	}
	if len(cs) != encrypted+len(m.Internal) || len(cs) == 0 {
		t.Errorf("Ciphertexts: %d, want %d objects and %d internal", len(cs), encrypted, len(m.Internal))
	}
	for _, c := range cs {
		if len(c.KES.Ciphertext) == 0 || len(c.KES.Plaintext) == 0 || c.KES.Key == "" {
			t.Errorf("%s: incomplete ciphertext record", c.Name)
		}
	}
}
