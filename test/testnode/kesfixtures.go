package testnode

import (
	"fmt"
	"os"
	"path/filepath"
)

// KESFixturesEnv names the directory of a KES migration fixture set (see
// ../shared/fixtures/kes-migration/README.md); without it, tests use the
// shared set beside the repository.
const KESFixturesEnv = "KEEP_KES_FIXTURES"

// KESFixtures returns the directory of the KES migration fixture set, or
// an error saying where none was found: the set is shared test data, not
// part of the repository, so tests skip without it.
func KESFixtures() (string, error) {
	dir := os.Getenv(KESFixturesEnv)
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", fmt.Errorf("no KES fixture set: %s is unset and %w", KESFixturesEnv, err)
		}
		dir = filepath.Join(root, "..", "shared", "fixtures", "kes-migration")
	}
	if _, err := os.Stat(filepath.Join(dir, "vectors.json")); err != nil {
		return "", fmt.Errorf("no KES fixture set at %s (set %s to one): %w", dir, KESFixturesEnv, err)
	}
	return dir, nil
}
