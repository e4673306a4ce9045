//go:build unix

package server

import (
	"fmt"
	"os"
	"syscall"
)

const restartSupported = true

// Reexec replaces the process with a new run of the same binary, with the
// same arguments and the current environment. It returns only on failure.
func Reexec() error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot restart: %w", err)
	}
	return fmt.Errorf("cannot restart: %w", syscall.Exec(self, os.Args, os.Environ())) // #nosec G204 G702 -- re-executes this very binary (os.Executable) with its own arguments and environment
}
