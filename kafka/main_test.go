package kafka_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// franz-go clients, the commit mark loops, dispatch workers and kfake
// clusters must all end with Close.
func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) { // child_test.go
	case "share":
		os.Exit(shareChild()) // a share-group member for the crash tests (share_crash_test.go)
	case "replay":
		os.Exit(replayChild()) // the first owner in the replay process tests (replay_crash_test.go)
	}
	goleak.VerifyTestMain(m)
}
