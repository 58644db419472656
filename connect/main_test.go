package connect_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: Close
// must end the publisher's and the subscribers' clients.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
