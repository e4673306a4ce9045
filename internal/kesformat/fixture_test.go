package kesformat

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/keep-kms/keep/test/kesfixture"
	"github.com/keep-kms/keep/test/testnode"
)

// loadFixture reads vectors.json and parses every file of keystore/ of the
// KES fixture set (testnode.KESFixtureDir).
func loadFixture(t testing.TB) (*kesfixture.Vectors, map[string]*Key) {
	t.Helper()
	dir := testnode.KESFixtureDir(t)
	f := kesfixture.LoadVectors(t, dir)
	keys := make(map[string]*Key)
	for _, file := range kesfixture.KeyFiles(t, dir) {
		k, err := ParseKeyFile(file.Name, file.Content)
		if err != nil {
			t.Fatalf("key file written by KES refused: %v", err)
		}
		keys[file.Name] = k
	}
	return f, keys
}

// loadManifestVectors returns the KES ciphertexts of manifest.json
// (objects[].kes and minio_internal[]), or skips if the set has no
// manifest.
func loadManifestVectors(t testing.TB) []kesfixture.NamedCiphertext {
	t.Helper()
	dir := testnode.KESFixtureDir(t)
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		t.Skipf("fixture set has no manifest.json: %v", err)
	}
	return kesfixture.LoadManifest(t, dir).Ciphertexts()
}
