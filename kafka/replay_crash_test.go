package kafka_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// The replay process tests run the first owner of the partition in a
// child process (child_test.go), then SIGKILL it or stop it with SIGTERM,
// and let the parent take the partition over.

// replayChild is the child member: it fails every record of key "stuck"
// and prints "ok <offset>" for every other record it handled (unbuffered
// writes: what was printed survives SIGKILL). It prints "ready" when it
// joined. On SIGTERM it stops (its last commit, LeaveGroup) and prints
// "closed".
func replayChild() int {
	say := childSay()
	s, err := kafka.NewSubscriber(childBrokerList(),
		kafka.WithGroup(os.Getenv(childGroup)), kafka.WithTopicCreation(1, -1), fastGroup(),
		kafka.WithCommitInterval(200*time.Millisecond),
		kafka.WithRedeliveryBackoff(50*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx = message.WithReady(ctx, func() { say("ready") })
	err = s.Subscribe(ctx, os.Getenv(childTopic), func(_ context.Context, m *message.Message) error {
		if m.Key == "stuck" {
			return errors.New("failing on purpose")
		}
		say("ok " + strconv.FormatInt(m.Delivery.Offset, 10))
		return nil
	})
	if cerr := s.Close(); cerr != nil {
		fmt.Fprintln(os.Stderr, "child Close:", cerr)
		return 1
	}
	if ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "child Subscribe returned:", err)
		return 1
	}
	say("closed")
	return 0
}

// replayChildProc is the running child and what it printed.
type replayChildProc struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	handled map[int64]bool // offsets the child handled successfully
	ready   chan struct{}
	closed  bool // printed "closed"
	eof     chan struct{}
	waited  bool
}

// wait waits for the child to exit, after its output was read.
func (c *replayChildProc) wait() *os.ProcessState {
	<-c.eof
	if !c.waited {
		c.waited = true
		_ = c.cmd.Wait()
	}
	return c.cmd.ProcessState
}

func (c *replayChildProc) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.handled)
}

func startReplayChild(t *testing.T, brokers []string, topic, group string) *replayChildProc {
	t.Helper()
	cmd, out := startChild(t, "replay", brokers, topic, group)
	c := &replayChildProc{cmd: cmd, handled: map[int64]bool{}, ready: make(chan struct{}), eof: make(chan struct{})}
	go func() {
		defer close(c.eof)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l := sc.Text()
			switch {
			case l == "ready":
				close(c.ready)
			case l == "closed":
				c.mu.Lock()
				c.closed = true
				c.mu.Unlock()
			case strings.HasPrefix(l, "ok "):
				off, err := strconv.ParseInt(strings.TrimPrefix(l, "ok "), 10, 64)
				if err == nil {
					c.mu.Lock()
					c.handled[off] = true
					c.mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		c.wait()
	})
	select {
	case <-c.ready:
	case <-c.eof:
		t.Fatal("the child member exited before it was ready")
	case <-time.After(testWait):
		t.Fatalf("the child member not ready after %v", testWait)
	}
	return c
}

// TestReplayChildProcessBroker is issue 24's head-of-line test with the
// first owner in another process: key "stuck" at the head of the one
// partition fails every time in the child while the 10,000 later records
// of other keys settle there; once a commit's metadata covers them the
// child is SIGKILLed (or stopped with SIGTERM: a rebalance to another
// process). The parent then joins the group with a handler that
// succeeds: it must be handed at most the unsettled head plus the
// records settled but not in the last commit read before the signal, and
// every record must have been handled by one process or the other.
func TestReplayChildProcessBroker(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	for name, sig := range map[string]syscall.Signal{"SIGKILL": syscall.SIGKILL, "SIGTERM": syscall.SIGTERM} {
		t.Run(name, func(t *testing.T) { testReplayChildProcess(t, brokers, sig) })
	}
}

func testReplayChildProcess(t *testing.T, brokers []string, sig syscall.Signal) {
	const n = 10_000
	topic := fmt.Sprintf("ferry-replay-proc-%d", time.Now().UnixNano())
	group := topic + "-g"
	pub, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(1, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	child := startReplayChild(t, brokers, topic, group)
	msgs := []*message.Message{{Key: "stuck", Payload: []byte("head")}}
	for i := range n {
		msgs = append(msgs, &message.Message{Key: "k" + strconv.Itoa(i%97), Payload: []byte("x")})
	}
	if err := pub.Publish(context.Background(), topic, msgs...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 120*time.Second, "the child to settle the later records", func() bool { return child.count() == n })
	var at, settled int64
	waitFor(t, 30*time.Second, "a commit with every later record in its metadata", func() bool {
		at, settled = committedSettled(t, brokers, group, topic)
		return at == 0 && settled == n
	})
	if err := child.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	state := child.wait()
	if sig == syscall.SIGTERM {
		child.mu.Lock()
		closed := child.closed
		child.mu.Unlock()
		if !closed || state == nil || !state.Success() {
			t.Fatalf("the child did not stop cleanly on SIGTERM (%v)", state)
		}
	}

	b := startReplayMember(t, brokers, topic, group, nil, false)
	defer func() { b.cancel(); <-b.done }()
	if err := pub.Publish(context.Background(), topic, &message.Message{Key: "sentinel"}); err != nil {
		t.Fatal(err)
	}
	// The stuck record is offset 0, the sentinel offset n+1.
	waitFor(t, 90*time.Second, "the parent to handle the stuck record and the sentinel", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.handled[0] > 0 && b.handled[n+1] > 0
	})
	took := time.Since(signalled)
	b.mu.Lock()
	defer b.mu.Unlock()
	child.mu.Lock()
	defer child.mu.Unlock()
	if child.handled[0] {
		t.Fatal("the child handled the stuck record: the test's failing key did not fail")
	}
	replayed := int64(len(b.handled) - 1) // without the sentinel
	bound := 1 + (int64(len(child.handled)) - settled)
	t.Logf("%v: the child settled %d of %d (the stuck head failing), last commit read before the signal at %d with %d settled in its metadata; the parent was handed %d (bound %d), and had the head %v after the signal",
		sig, len(child.handled), n+1, at, settled, replayed, bound, took.Round(100*time.Millisecond))
	if replayed > bound {
		t.Errorf("the parent was handed %d records, want at most %d (the unsettled head and the settled ones not in the last commit)", replayed, bound)
	}
	for off := int64(0); off <= n; off++ {
		if !child.handled[off] && b.handled[off] == 0 {
			t.Fatalf("offset %d was never handled: lost", off)
		}
	}
}
