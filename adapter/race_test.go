//go:build race

package adapter_test

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = true
