package kafka_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// The crash tests run a share-group member in a child process
// (child_test.go) and kill it (SIGKILL) or freeze it (SIGSTOP) while it
// holds records.

// shareChild is the child member: concurrency 4, every handler prints
// "got <id> <attempt>" and then blocks, so every record it acquires stays
// in flight until the process dies. It prints "ready" when it joined.
func shareChild() int {
	say := childSay()
	s, err := kafka.NewSubscriber(childBrokerList(),
		kafka.WithShareGroup(os.Getenv(childGroup)), kafka.WithConcurrency(4), fastShare())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := message.WithReady(context.Background(), func() { say("ready") })
	err = s.Subscribe(ctx, os.Getenv(childTopic), func(ctx context.Context, m *message.Message) error {
		say("got " + m.ID + " " + strconv.Itoa(m.Delivery.Attempt))
		<-ctx.Done()
		return ctx.Err()
	})
	fmt.Fprintln(os.Stderr, "child Subscribe returned:", err)
	return 1
}

// startShareChild starts the child member and returns it with a channel
// of its output lines.
func startShareChild(t *testing.T, brokers []string, topic, group string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd, out := startChild(t, "share", brokers, topic, group)
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, lines
}

// nextLine waits for the child's next line starting with prefix.
func nextLine(t *testing.T, lines <-chan string, prefix string) string {
	t.Helper()
	deadline := time.After(testWait)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the child member exited before printing %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("timed out after %v waiting for the child member to print %q", testWait, prefix)
		}
	}
}

// setBrokerConfig sets a dynamic broker config on every broker (kfake's
// share.record.lock.sweep.interval.ms).
func setBrokerConfig(t *testing.T, brokers []string, k, v string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeBroker
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Value, c.Op = k, kmsg.StringPtr(v), kmsg.IncrementalAlterConfigOpSet
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	if _, err := req.RequestWith(context.Background(), cl); err != nil {
		t.Fatalf("set broker config %s=%s: %v", k, v, err)
	}
}

// TestShareGroupMemberCrash: a member holding records in flight is killed
// (SIGKILL: its connections close) or freezes (SIGSTOP: its connections
// stay open, its lock renewals stop); the other members then get every
// record it held, with the delivery count one higher, and every message
// is handled. The records' lock is 2 s.
func TestShareGroupMemberCrash(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		t.Run(sig.String(), func(t *testing.T) {
			shareBackends(t, func(t *testing.T, brokers []string) {
				testShareCrash(t, brokers, sig)
			})
		})
	}
}

func testShareCrash(t *testing.T, brokers []string, sig syscall.Signal) {
	const n = 20
	topic := uniqueTopic(t)
	group := "crash-" + topic
	p := newPublisher(t, brokers, kafka.WithTopicCreation(1, -1))
	if _, err := kadm.NewClient(p.Client()).CreateTopic(context.Background(), 1, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	setGroupConfig(t, brokers, group, map[string]string{"share.record.lock.duration.ms": "2000"})
	if strings.HasSuffix(t.Name(), "/kfake") {
		setBrokerConfig(t, brokers, "share.record.lock.sweep.interval.ms", "100")
		setBrokerConfig(t, brokers, "group.share.record.lock.duration.ms", "2000") // kfake reads no group config for it
	}
	cmd, lines := startShareChild(t, brokers, topic, group)
	nextLine(t, lines, "ready")
	ids := publishN(t, p, topic, "m", n)
	inFlight := map[string]bool{}
	for len(inFlight) < 4 {
		f := strings.Fields(nextLine(t, lines, "got "))
		inFlight[f[1]] = true
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	crashed := time.Now()

	c := newCalls()
	var firstRedelivery time.Duration
	var once sync.Once
	for i := range 2 {
		s := newShareSubscriber(t, brokers, group, kafka.WithConcurrency(4))
		startSubscribe(t, s, topic, func(_ context.Context, m *message.Message) error {
			if inFlight[m.ID] {
				once.Do(func() { firstRedelivery = time.Since(crashed) })
			}
			c.add(i, m)
			return nil
		})
	}
	c.waitUntil(t, "every message handled by the surviving members", func(c *calls) bool { return len(c.byID) == n })
	all := time.Since(crashed)
	for _, id := range ids {
		d := c.deliveries(id)
		if len(d) == 0 {
			t.Errorf("%s never handled", id)
			continue
		}
		if inFlight[id] && d[0].Attempt < 2 {
			t.Errorf("%s was in flight on the crashed member; survivors got it with Attempt %d, want >= 2 (the broker's delivery count)", id, d[0].Attempt)
		}
	}
	t.Logf("%v: 4 records in flight and up to %d acquired by the crashed member; first in-flight record handled by a survivor %v after the signal, all %d handled after %v (survivors joined after the signal)",
		sig, n, firstRedelivery.Round(10*time.Millisecond), n, all.Round(10*time.Millisecond))
}
