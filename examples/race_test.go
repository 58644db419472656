//go:build race

package examples_test

// raceEnabled: the test binary runs under the race detector, so the
// examples are built with -race as well.
const raceEnabled = true
