package testnode

import "testing"

// KESFixtureDir returns the KES migration fixture set's directory
// (KESFixtures), or skips the test, saying where it looked, if there is
// none.
func KESFixtureDir(t testing.TB) string {
	t.Helper()
	dir, err := KESFixtures()
	if err != nil {
		t.Skip(err)
	}
	return dir
}
