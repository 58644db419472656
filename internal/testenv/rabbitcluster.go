package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RabbitClusterURLs are the AMQP URLs of the three nodes of the on-demand
// RabbitMQ cluster of scripts/rabbitmq-cluster.sh (`services.sh up
// rabbitmq-cluster`): node N is ferryN@localhost on 127.0.0.1:570N.
var RabbitClusterURLs = []string{
	"amqp://guest:guest@127.0.0.1:5701/",
	"amqp://guest:guest@127.0.0.1:5702/",
	"amqp://guest:guest@127.0.0.1:5703/",
}

// NeedRabbitCluster starts the 3-node RabbitMQ cluster if it is not
// running (scripts/rabbitmq-cluster.sh up, which `services.sh up
// rabbitmq-cluster` also runs) and returns its node URLs. The
// test holds the exclusive "rabbitmq-cluster" lock until it ends (cluster
// tests kill nodes). If the nodes do not come up, their data is deleted
// and the cluster formed again, once. When it ends, the cluster is stopped if this call
// started it (three Erlang VMs), and otherwise left with all three nodes
// up.
func NeedRabbitCluster(t testing.TB) []string {
	t.Helper()
	release := exclusive(t, "rabbitmq-cluster")
	_, err := rabbitScript("status")
	started := err != nil
	t.Cleanup(func() {
		defer release()
		what := "up"
		if started {
			what = "down"
		}
		if out, err := rabbitScript(what); err != nil {
			t.Errorf("testenv: %v\n%s", err, out)
		}
	})
	start := time.Now()
	if out, err := rabbitScript("up"); err == nil {
		t.Logf("testenv: rabbitmq-cluster.sh up in %v (started: %v)", time.Since(start).Round(time.Millisecond), started)
	} else {
		// Data that does not boot (a node killed mid-write, say): the
		// cluster is formed again from scratch, once.
		t.Logf("testenv: %v\n%s\ntestenv: deleting the cluster's data and starting again", err, out)
		rabbitCluster(t, "reset")
		rabbitCluster(t, "up")
	}
	return RabbitClusterURLs
}

// KillRabbitNode sends SIGKILL to RabbitMQ cluster node n (1-3) and returns
// once its VM is gone.
func KillRabbitNode(t testing.TB, n int) {
	t.Helper()
	rabbitCluster(t, "kill", strconv.Itoa(n))
}

// StopRabbitNode shuts RabbitMQ cluster node n (1-3) down gracefully and
// returns once its VM has exited.
func StopRabbitNode(t testing.TB, n int) {
	t.Helper()
	rabbitCluster(t, "stop", strconv.Itoa(n))
}

// StartRabbitNode starts RabbitMQ cluster node n (1-3) and returns once it
// serves AMQP.
func StartRabbitNode(t testing.TB, n int) {
	t.Helper()
	rabbitCluster(t, "start", strconv.Itoa(n))
}

// RabbitQueueLeader returns the number (1-3) of the cluster node that
// hosts the leader of the quorum queue, as a running node reports it.
func RabbitQueueLeader(queue string) (int, error) {
	out, err := rabbitScript("leader", queue)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || n < 1 || n > 3 {
		return 0, fmt.Errorf("testenv: rabbitmq-cluster.sh leader %s: got %q, want 1, 2 or 3", queue, out)
	}
	return n, nil
}

// rabbitCluster runs scripts/rabbitmq-cluster.sh with args; failing, it
// fails the test (skips it unless FERRY_REQUIRE_BROKERS is set).
func rabbitCluster(t testing.TB, args ...string) {
	t.Helper()
	start := time.Now()
	out, err := rabbitScript(args...)
	if err != nil {
		msg := fmt.Sprintf("testenv: failed after %v: %v\n%s", time.Since(start).Round(time.Millisecond), err, out)
		if RequireBrokers() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Logf("testenv: rabbitmq-cluster.sh %v in %v", args, time.Since(start).Round(time.Millisecond))
}

// rabbitScript runs scripts/rabbitmq-cluster.sh with args and returns its
// standard output.
func rabbitScript(args ...string) (string, error) { return runScript("rabbitmq-cluster.sh", args...) }

func runScript(script string, args ...string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "scripts", script)}, args...)...)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), fmt.Errorf("%s %v: %w: %s", script, args, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
