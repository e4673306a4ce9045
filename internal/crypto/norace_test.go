//go:build !race

package crypto

// raceEnabled skips allocation checks: the race detector allocates and makes
// sync.Pool drop items on purpose.
const raceEnabled = false
