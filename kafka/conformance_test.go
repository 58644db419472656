package kafka_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/codec/codectest"
	"github.com/ferrymsg/ferry/dedupe/dedupetest"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
	"github.com/ferrymsg/ferry/retry/retrytest"
)

// newFake starts an in-process kfake cluster for the test and returns its
// addresses.
func newFake(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	return newFakeCluster(t, opts...).ListenAddrs()
}

// newFakeCluster starts an in-process kfake cluster for the test.
func newFakeCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(4),
	}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// fastGroup makes group joins and rebalances quick in tests.
func fastGroup() kafka.Option {
	return kafka.WithClientOptions(
		kgo.HeartbeatInterval(200*time.Millisecond),
		kgo.SessionTimeout(6*time.Second),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
}

func harness(brokers []string, partitions int32, restart func(testing.TB)) messagetest.Harness {
	// Each subscriber dials through a kill switch of its own, for Kill.
	kills := new(messagetest.KillSwitches)
	return messagetest.Harness{
		NewPublisher: func(t testing.TB) (message.Publisher, error) {
			return kafka.NewPublisher(brokers, kafka.WithTopicCreation(partitions, -1), kafka.WithClientOptions(kgo.ProducerLinger(time.Millisecond)))
		},
		NewSubscriber: func(t testing.TB, c messagetest.SubscriberConfig) (message.Subscriber, error) {
			opts := []kafka.SubscriberOption{kafka.WithGroup(c.Group), kafka.WithTopicCreation(partitions, -1), fastGroup(),
				kafka.WithCommitInterval(200 * time.Millisecond)}
			if c.Concurrency > 0 {
				opts = append(opts, kafka.WithConcurrency(c.Concurrency))
			}
			if c.InitialBackoff > 0 {
				opts = append(opts, kafka.WithRedeliveryBackoff(c.InitialBackoff, max(c.MaxBackoff, c.InitialBackoff)))
			}
			if c.DrainTimeout > 0 {
				opts = append(opts, kafka.WithDrainTimeout(c.DrainTimeout))
			}
			ks := messagetest.NewKillSwitch(nil)
			opts = append(opts, kafka.WithClientOptions(kgo.Dialer(ks.DialContext)))
			s, err := kafka.NewSubscriber(brokers, opts...)
			if err == nil {
				kills.Add(t, s, ks)
			}
			return s, err
		},
		// Kill closes every connection of the subscriber (group
		// coordinator, fetch and commit connections alike) and refuses new
		// ones: no heartbeat, commit or LeaveGroup reaches the cluster, so
		// the group moves the member's partitions only when its session
		// times out, as after a real crash. A dialer rather than a TCP
		// proxy, because the client connects to the addresses the
		// cluster advertises, not only to the seed.
		Kill:          kills.Kill,
		RestartBroker: restart,
		Features: messagetest.Features{
			NewGroupReadsHistory: true,
			Restart:              restart != nil,
			InvalidTopics:        []string{"has space", "ünïcode", ".", "..", "a/b", string(make([]byte, 250))},
			MaxPayload:           900 * 1024, // under the producer's default 1,000,012-byte batch limit
			Timeout:              60 * time.Second,
		},
	}
}

// conformance runs the adapter contract and the middleware suites on one
// harness.
func conformance(t *testing.T, h messagetest.Harness) {
	messagetest.Run(t, h)
	t.Run("retry and dead-lettering", func(t *testing.T) { retrytest.Run(t, h) })
	t.Run("dedupe", func(t *testing.T) { dedupetest.RunMiddleware(t, h) })
	t.Run("codec", func(t *testing.T) { codectest.Run(t, h) })
}

func TestConformanceKfake(t *testing.T) {
	conformance(t, harness(newFake(t), 4, nil))
}

func TestConformanceBroker(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	conformance(t, harness(brokers, 4, func(t testing.TB) { testenv.RestartService(t, "kafka") }))
}
