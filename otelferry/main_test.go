package otelferry_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// adapters' clients and lag pollers, the subscriptions and the SDK's
// processors must all end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
