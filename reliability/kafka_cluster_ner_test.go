package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// waitISR waits until every partition of topic has a leader and exactly n
// in-sync replicas, and returns how long that took.
func waitISR(t *testing.T, pub *kafka.Publisher, topic string, n int, timeout time.Duration) time.Duration {
	t.Helper()
	adm := kadm.NewClient(pub.Client())
	start := time.Now()
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := adm.ListTopics(ctx, topic)
		cancel()
		switch d, ok := md[topic]; {
		case err != nil:
			last = err.Error()
		case !ok || d.Err != nil || len(d.Partitions) == 0:
			last = fmt.Sprintf("topic not listed (%v)", d.Err)
		default:
			ok := true
			var b strings.Builder
			for _, p := range d.Partitions.Sorted() {
				fmt.Fprintf(&b, " p%d leader=%d isr=%v", p.Partition, p.Leader, p.ISR)
				if p.Leader < 0 || len(p.ISR) != n {
					ok = false
				}
			}
			if ok {
				return time.Since(start)
			}
			last = b.String()
		}
		if time.Since(start) > timeout {
			t.Fatalf("topic %s: not every partition has %d in-sync replicas after %v (last:%s)", topic, n, timeout, last)
		}
		time.Sleep(200 * time.Millisecond) // polling the cluster's metadata
	}
}

// notEnoughReplicas reports whether err names Kafka's NOT_ENOUGH_REPLICAS.
func notEnoughReplicas(err error) bool {
	return errors.Is(err, kerr.NotEnoughReplicas) || strings.Contains(err.Error(), kerr.NotEnoughReplicas.Message)
}

// TestKafkaClusterNotEnoughReplicas kills two of the three brokers: with
// one in-sync replica left of the two min.insync.replicas asks for, every
// Publish (acks=all) fails with an error naming NOT_ENOUGH_REPLICAS once
// its context ends, none outlives it by more than overrunMargin (neither
// those nor the calls in flight while the brokers die); when a
// second broker returns, a Publish already waiting succeeds by itself (the
// same Publisher), later ones too, and every acknowledged message is
// consumed.
func TestKafkaClusterNotEnoughReplicas(t *testing.T) {
	needFaults(t)
	brokers := testenv.NeedKafkaCluster(t)
	topic := name("rel_cluster_ner")
	raw, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(3, 3),
		kafka.WithClientOptions(kgo.ProducerLinger(2*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	deleteKafkaTopics(t, raw, topic)
	pub := &deadlineWatch{Publisher: raw}
	// Subscribed from the start, with all three brokers up: the group's
	// offsets topic (RF 3) exists before two of them die.
	sub, err := kafka.NewSubscriber(brokers, kafka.WithGroup(topic+"_g"), kafka.WithConcurrency(4),
		kafka.WithTopicCreation(3, 3), kafka.WithCommitInterval(200*time.Millisecond), fastGroup())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	l := newLedger()
	sb := subscribe(context.Background(), sub, topic, l.handle)

	var seq atomic.Int64
	batch := func(phase string, n int) []*message.Message {
		msgs := make([]*message.Message, n)
		for i := range msgs {
			s := seq.Add(1)
			// Keys over all three partitions.
			msgs[i] = &message.Message{ID: fmt.Sprintf("ner-%s-%d", phase, s), Key: fmt.Sprint(s % 64), Payload: []byte("payload")}
		}
		return msgs
	}
	publish := func(phase string, n int, timeout time.Duration) error {
		msgs := batch(phase, n)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := pub.Publish(ctx, topic, msgs...)
		l.published(msgs, err)
		return err
	}

	// All three up.
	for range 5 {
		if err := publish("up", 20, 30*time.Second); err != nil {
			t.Fatalf("Publish with all three brokers up: %v", err)
		}
	}
	waitISR(t, raw, topic, 3, 60*time.Second)

	// Two of three killed, with Publish calls in flight (3 s contexts):
	// each succeeds or fails, none outlives its context by more than
	// overrunMargin (pub.check). The survivor ends as the only replica in
	// sync.
	stopInFlight := make(chan struct{})
	var inFlight sync.WaitGroup
	var inFlightCalls atomic.Int64
	for range 4 {
		inFlight.Go(func() {
			for {
				select {
				case <-stopInFlight:
					return
				default:
				}
				_ = publish("kill", 5, 3*time.Second)
				inFlightCalls.Add(1)
			}
		})
	}
	killed := time.Now()
	testenv.KillClusterNode(t, 2)
	testenv.KillClusterNode(t, 3)
	waitISR(t, raw, topic, 1, 60*time.Second)
	shrink := time.Since(killed)
	close(stopInFlight)
	inFlight.Wait()

	// One left: 8 concurrent calls of 10 messages, 2 s each. Every call
	// must fail, naming NOT_ENOUGH_REPLICAS.
	const callers, calls, perCall = 8, 1, 2 * time.Second
	var (
		mu       sync.Mutex
		failures []error
		nilCalls int
		wg       sync.WaitGroup
	)
	oneLeft := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				err := publish("one-left", 10, perCall)
				mu.Lock()
				if err == nil {
					nilCalls++
				} else {
					failures = append(failures, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	oneLeftTook := time.Since(oneLeft)
	if nilCalls > 0 {
		t.Errorf("%d of %d Publish calls returned nil with one of three brokers (min.insync.replicas 2, acks=all)", nilCalls, callers*calls)
	}
	var unnamed []string
	for _, err := range failures {
		if !notEnoughReplicas(err) {
			unnamed = append(unnamed, err.Error())
		}
	}
	if len(unnamed) > 0 {
		t.Errorf("%d of %d failed Publish calls do not name NOT_ENOUGH_REPLICAS (errors.Is kerr.NotEnoughReplicas or its text), e.g. %q", len(unnamed), len(failures), unnamed[0])
	}
	sample := "none"
	if len(failures) > 0 {
		sample = failures[0].Error()
	}
	t.Logf("with one broker left: %d calls failed in %v, e.g.: %s", len(failures), oneLeftTook.Round(time.Millisecond), sample)

	// A Publish waiting while broker 2 comes back: it succeeds by itself.
	resumed := make(chan error, 1)
	go func() { resumed <- publish("resume", 30, 90*time.Second) }()
	restart := time.Now()
	testenv.StartClusterNode(t, 2)
	started := time.Since(restart)
	var resumeAfter time.Duration
	select {
	case err := <-resumed:
		resumeAfter = time.Since(restart)
		if err != nil {
			t.Errorf("the Publish waiting while broker 2 came back failed: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the Publish waiting while broker 2 came back did not return within 2 minutes")
	}
	// Broker 3 comes back meanwhile (NeedKafkaCluster's cleanup would
	// wait for it otherwise).
	third := testenv.StartClusterNodeInBackground(t, 3)
	for range 3 {
		if err := publish("two", 20, 30*time.Second); err != nil {
			t.Errorf("Publish with two of three brokers: %v", err)
		}
	}

	lost := l.waitAcked(2 * time.Minute)
	sb.running(t)
	sb.stop(t)
	r := l.result()
	r.Fault, r.Adapter = "two of three brokers SIGKILLed", "kafka (3-broker cluster)"
	r.Injection = "services.sh kill kafka-cluster-2 and -3 (4 publishers with 3 s contexts until the ISR shrank), 8 concurrent Publish calls (acks=all, 2 s contexts), then start kafka-cluster-2 under a waiting Publish"
	r.Extra = fmt.Sprintf("isr_shrunk_after=%v calls_during_kills=%d one_left_calls=%d failed_naming_not_enough_replicas=%d restart_took=%v waiting_publish_returned_after=%v %s",
		shrink.Round(100*time.Millisecond), inFlightCalls.Load(), callers*calls, len(failures)-len(unnamed), started.Round(100*time.Millisecond),
		resumeAfter.Round(100*time.Millisecond), pub.summary())
	report(t, r, lost)
	pub.check(t)
	third()
}
