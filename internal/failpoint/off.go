//go:build !failpoints

package failpoint

// Enabled reports whether this build has failpoints.
const Enabled = false

// Hit does nothing in a build without the failpoints tag; the compiler
// inlines it away.
func Hit(Name) {}
