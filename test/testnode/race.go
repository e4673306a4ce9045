//go:build race

package testnode

// raceEnabled is whether these tests run under the race detector; keep is
// then built with it too (see build).
const raceEnabled = true
