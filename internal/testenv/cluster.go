package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// KafkaClusterBrokers are the three brokers of the on-demand Kafka cluster
// of scripts/services.sh (`up kafka-cluster`): RF 3 and
// min.insync.replicas 2 by default. Their KRaft controller is a fourth,
// controller-only node (127.0.0.1:29190) that the Kill/Stop/Start
// functions leave alone, so the cluster keeps its quorum when brokers die.
var KafkaClusterBrokers = []string{"127.0.0.1:29091", "127.0.0.1:29092", "127.0.0.1:29093"}

// NeedKafkaCluster starts the Kafka cluster if it is not running
// (services.sh up kafka-cluster; about 10 s cold) and returns its brokers.
// The test holds the exclusive "kafka-cluster" lock until it ends: cluster
// tests kill nodes, so they run one at a time across packages.
func NeedKafkaCluster(t testing.TB) []string {
	t.Helper()
	release := exclusive(t, "kafka-cluster")
	t.Cleanup(func() {
		// Leave all three brokers up for the next test, then let it in.
		clusterScript(t, "up", "kafka-cluster")
		release()
	})
	out := clusterScript(t, "up", "kafka-cluster")
	clusterMu.Lock()
	if !clusterChecked {
		// The first up of this process: did it start a node?
		clusterChecked = true
		clusterStarted = strings.Contains(out, "kafka: starting Kafka")
	}
	clusterMu.Unlock()
	return KafkaClusterBrokers
}

var (
	clusterMu      sync.Mutex
	clusterChecked bool // NeedKafkaCluster has run in this process
	clusterStarted bool // and its first call started the cluster
)

// StopKafkaClusterIfStarted stops the whole cluster (services.sh down
// kafka-cluster, under the exclusive lock) if NeedKafkaCluster started it
// in this process, so a test package does not leave four JVMs (1-1.4 GiB
// resident) running; a cluster that was up before is left up. Call it once
// the package's tests are done, e.g. from TestMain.
func StopKafkaClusterIfStarted() error {
	clusterMu.Lock()
	started := clusterStarted
	clusterStarted = false
	clusterMu.Unlock()
	if !started {
		return nil
	}
	lockMu.Lock()
	if f := held["kafka-cluster"]; f != nil {
		f.Close()
		delete(held, "kafka-cluster")
	}
	lockMu.Unlock()
	f, err := lockFile("kafka-cluster", true)
	if err != nil {
		return fmt.Errorf("testenv: stopping the Kafka cluster: %w", err)
	}
	defer f.Close()
	_, err = runClusterScript("down", "kafka-cluster")
	return err
}

// KillClusterNode sends SIGKILL to cluster node n (1-3) and returns once it
// is gone.
func KillClusterNode(t testing.TB, n int) { t.Helper(); clusterScript(t, "kill", clusterNode(n)) }

// StartClusterNode starts cluster node n and returns once it answers.
func StartClusterNode(t testing.TB, n int) { t.Helper(); clusterScript(t, "start", clusterNode(n)) }

// StartClusterNodeInBackground starts cluster node n while the test goes
// on; wait returns once it answers (failing the test if it did not
// start). Call wait from the test's goroutine; the test's cleanup calls
// it too.
func StartClusterNodeInBackground(t testing.TB, n int) (wait func()) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := runClusterScript("start", clusterNode(n))
		done <- err
	}()
	var once sync.Once
	wait = func() {
		t.Helper()
		once.Do(func() {
			if err := <-done; err != nil {
				t.Error(err)
				return
			}
			t.Logf("testenv: services.sh [start %s] in the background: %v", clusterNode(n), time.Since(start).Round(time.Millisecond))
		})
	}
	t.Cleanup(wait) // a test that ends early still waits for it
	return wait
}

// StopClusterNode stops cluster node n cleanly (SIGTERM, controlled
// shutdown).
func StopClusterNode(t testing.TB, n int) { t.Helper(); clusterScript(t, "stop", clusterNode(n)) }

func clusterNode(n int) string { return fmt.Sprintf("kafka-cluster-%d", n) }

// clusterScript runs services.sh with args and returns its output; a
// failure fails the test (skips it without FERRY_REQUIRE_BROKERS).
func clusterScript(t testing.TB, args ...string) string {
	t.Helper()
	start := time.Now()
	out, err := runClusterScript(args...)
	if err != nil {
		if RequireBrokers() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Logf("testenv: services.sh %v in %v", args, time.Since(start).Round(time.Millisecond))
	return out
}

func runClusterScript(args ...string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "scripts", "services.sh")}, args...)...)
	cmd.Dir = root
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("testenv: services.sh %v failed after %v: %w\n%s", args, time.Since(start).Round(time.Millisecond), err, out)
	}
	return string(out), nil
}
