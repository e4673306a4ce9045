//go:build !linux && !darwin && !freebsd && !netbsd && !openbsd

package cli

import "os"

// isTerminalFile reports false: on this system the commands do not ask
// for confirmation, they need the flag that gives it.
func isTerminalFile(*os.File) bool { return false }
