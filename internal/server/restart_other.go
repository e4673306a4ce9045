//go:build !unix

package server

import "errors"

const restartSupported = false

// Reexec is not supported on this platform.
func Reexec() error {
	return errors.New("restart is not supported on this platform")
}
