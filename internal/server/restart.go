package server

import "errors"

// ErrRestart is returned by Run when the node was asked to restart: the
// caller re-executes the process (Reexec), which reloads configuration and
// environment.
var ErrRestart = errors.New("restart requested")

// restartFunc returns the function that asks Run to return ErrRestart once
// the current requests are answered; nil where a restart is not possible or
// would lose the node's state, as in dev mode, where state is in memory.
func restartFunc(restart chan<- struct{}, dev bool) func() {
	if !restartSupported || dev {
		return nil
	}
	return func() {
		select {
		case restart <- struct{}{}:
		default:
		}
	}
}
