//go:build !race

package testnode

const raceEnabled = false
