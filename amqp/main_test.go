package amqp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind:
// connection supervisors, confirm readers, dispatch workers and the
// client's own goroutines must all end with Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
