package testnode

import (
	"os"
	"path/filepath"
	"testing"
)

// KESFixturesEnv names the directory of a KES migration fixture set (a
// keystore, vectors.json, manifest.json and a MinIO data directory made by
// real KES servers). Without it, tests use the shared set beside the
// repository, ../shared/fixtures/kes-migration.
const KESFixturesEnv = "KEEP_KES_FIXTURES"

// KESFixtureDir returns the KES migration fixture set's directory, or
// skips the test, naming the directory it looked for, if there is none:
// the set is shared test data, not part of the repository.
func KESFixtureDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(KESFixturesEnv)
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			t.Skipf("no KES fixture set: %s is unset and the repository root is unknown: %v", KESFixturesEnv, err)
		}
		dir = filepath.Join(root, "..", "shared", "fixtures", "kes-migration")
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Skipf("no KES fixture set at %s (set %s to a fixture directory)", dir, KESFixturesEnv)
	}
	return dir
}
