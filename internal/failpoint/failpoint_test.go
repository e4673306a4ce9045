package failpoint

import (
	"strings"
	"testing"
)

// TestNames checks that every failpoint has a distinct name that gofail
// accepts in GOFAIL_FAILPOINTS (no '=' or ';') and that names it as Keep's.
func TestNames(t *testing.T) {
	seen := map[Name]bool{}
	for _, n := range All {
		switch {
		case seen[n]:
			t.Errorf("%s is listed twice", n)
		case !strings.HasPrefix(string(n), "keep"):
			t.Errorf("%s does not start with keep", n)
		case strings.ContainsAny(string(n), "=; /"):
			t.Errorf("%s holds a character that GOFAIL_FAILPOINTS or the HTTP endpoint cannot carry", n)
		}
		seen[n] = true
	}
}
