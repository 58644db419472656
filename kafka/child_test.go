package kafka_test

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/internal/testenv"
)

// The process tests run a member in a child process: the test binary
// again, which TestMain sends to the child's function when childEnv names
// it. The child reads its brokers, topic and group from the environment.
const (
	childEnv     = "FERRY_KAFKA_CHILD" // "replay" or "share": run as that child
	childBrokers = "FERRY_KAFKA_CHILD_BROKERS"
	childTopic   = "FERRY_KAFKA_CHILD_TOPIC"
	childGroup   = "FERRY_KAFKA_CHILD_GROUP"
)

// childSay returns a child's line printer: one line per call, unbuffered
// (what was printed survives SIGKILL), safe for concurrent handlers.
func childSay() func(string) {
	var mu sync.Mutex
	return func(s string) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = os.Stdout.WriteString(s + "\n")
	}
}

// startChild starts the child kind on topic and group and returns it with
// its standard output (its standard error goes to the test's). The test
// reads the output to its end, then waits for the process.
func startChild(t *testing.T, kind string, brokers []string, topic, group string) (*exec.Cmd, io.Reader) {
	t.Helper()
	return testenv.StartChild(t, childEnv+"="+kind, childBrokers+"="+strings.Join(brokers, ","),
		childTopic+"="+topic, childGroup+"="+group)
}

// childBrokerList is the child's brokers.
func childBrokerList() []string { return strings.Split(os.Getenv(childBrokers), ",") }
