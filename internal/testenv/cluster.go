package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// KafkaClusterBrokers are the three nodes of the on-demand Kafka cluster of
// scripts/services.sh (`up kafka-cluster`): RF 3 and min.insync.replicas 2
// by default.
var KafkaClusterBrokers = []string{"127.0.0.1:29091", "127.0.0.1:29092", "127.0.0.1:29093"}

// NeedKafkaCluster starts the 3-node Kafka cluster if it is not running
// (services.sh up kafka-cluster; about 10 s cold) and returns its brokers.
// The test holds the exclusive "kafka-cluster" lock until it ends: cluster
// tests kill nodes, so they run one at a time across packages.
func NeedKafkaCluster(t testing.TB) []string {
	t.Helper()
	release := exclusive(t, "kafka-cluster")
	t.Cleanup(func() {
		// Leave all three nodes up for the next test, then let it in.
		clusterScript(t, "up", "kafka-cluster")
		release()
	})
	clusterScript(t, "up", "kafka-cluster")
	return KafkaClusterBrokers
}

// KillClusterNode sends SIGKILL to cluster node n (1-3) and returns once it
// is gone.
func KillClusterNode(t testing.TB, n int) { t.Helper(); clusterScript(t, "kill", clusterNode(n)) }

// StartClusterNode starts cluster node n and returns once it answers.
func StartClusterNode(t testing.TB, n int) { t.Helper(); clusterScript(t, "start", clusterNode(n)) }

// StopClusterNode stops cluster node n cleanly (SIGTERM, controlled
// shutdown).
func StopClusterNode(t testing.TB, n int) { t.Helper(); clusterScript(t, "stop", clusterNode(n)) }

func clusterNode(n int) string { return fmt.Sprintf("kafka-cluster-%d", n) }

func clusterScript(t testing.TB, args ...string) {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "scripts", "services.sh")}, args...)...)
	cmd.Dir = root
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("testenv: services.sh %v failed after %v: %v\n%s", args, time.Since(start).Round(time.Millisecond), err, out)
		if RequireBrokers() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Logf("testenv: services.sh %v in %v", args, time.Since(start).Round(time.Millisecond))
}
