package kafka_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// franz-go clients, the commit mark loops, dispatch workers and kfake
// clusters must all end with Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
