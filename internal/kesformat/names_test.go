package kesformat

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"a": true, "A-b_9": true, "_a": true, "a_": true, "__": true, strings.Repeat("x", 80): true,
		"": false, "_": false, "-a": false, "a-": false, "a.b": false, "a/b": false, `a\b`: false,
		"a b": false, "ä": false, strings.Repeat("x", 81): false, "a*": false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}
