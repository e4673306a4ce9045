package kesformat

// MaxNameLen bounds the names KES accepts.
const MaxNameLen = 80

// ValidName reports whether KES accepts s as the name of a key, policy or
// identity: 1 to 80 of 0-9 A-Z a-z _ -, no - first or last, not "_" alone
// (KES auth.go validName). Every such name is also one KES's fs keystore
// accepts as a file name (no /, \ or .).
func ValidName(s string) bool {
	if s == "" || s == "_" || len(s) > MaxNameLen {
		return false
	}
	last := len(s) - 1
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c == '_':
		case c == '-' && i > 0 && i < last:
		default:
			return false
		}
	}
	return true
}
