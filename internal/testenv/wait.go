package testenv

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// WaitFor polls cond every millisecond until it holds and fails t when
// timeout passes first, naming what it waited for. It is for conditions a
// test cannot wait for on a channel (a count reaching a value, a state
// that is only readable); it is never a sleep standing in for
// synchronisation.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, timeout, time.Millisecond, "timed out after %v waiting for %s", timeout, what)
}
