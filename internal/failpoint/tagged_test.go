//go:build !failpoints

package failpoint

import (
	"os/exec"
	"testing"
)

// TestTaggedBuild runs this package's tests in a build with -tags
// failpoints (TestHit), so that the one test command of the README runs
// them too.
func TestTaggedBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package with -tags failpoints")
	}
	out, err := exec.Command("go", "test", "-count=1", "-tags", "failpoints", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go test -tags failpoints: %v\n%s", err, out)
	}
}
