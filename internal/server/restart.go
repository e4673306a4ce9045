package server

import "errors"

// ErrRestart is returned by Run when the node was asked to restart: the
// caller re-executes the process (Reexec), which reloads configuration and
// environment.
var ErrRestart = errors.New("restart requested")

// restartFunc returns the function that asks Run to return ErrRestart once
// the current requests are answered.
func restartFunc(restart chan<- struct{}) func() {
	if !restartSupported {
		return nil
	}
	return func() {
		select {
		case restart <- struct{}{}:
		default:
		}
	}
}
