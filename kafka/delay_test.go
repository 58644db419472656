package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/delaytest"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// delayHarness runs the delayed-retry suite (internal/delaytest) on
// brokers: tier topics <topic>-retry-<ms>, partitions paused until their
// head is due.
func delayHarness(brokers []string, restart func(testing.TB)) delaytest.Harness {
	return delaytest.Harness{
		NewPublisher: func(t testing.TB) message.Publisher {
			p, err := kafka.NewPublisher(brokers, kafka.WithTopicCreation(2, -1), kafka.WithClientOptions(kgo.ProducerLinger(time.Millisecond)))
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		NewSubscriber: func(t testing.TB, group string) message.Subscriber {
			s, err := kafka.NewSubscriber(brokers, kafka.WithGroup(group), kafka.WithTopicCreation(2, -1), fastGroup(),
				kafka.WithConcurrency(4), kafka.WithCommitInterval(100*time.Millisecond),
				kafka.WithRedeliveryBackoff(5*time.Millisecond, 50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Topic: func(t testing.TB) string {
			topic := uniqueTopic(t.(*testing.T))
			t.Cleanup(func() {
				cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
				if err != nil {
					return
				}
				defer cl.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, _ = kadm.NewClient(cl).DeleteTopics(ctx, topic, topic+".DLT", topic+"-retry-200", topic+"-retry-400", topic+"-retry-1000")
			})
			return topic
		},
		Restart:   restart,
		Positions: true,
		TierTopic: true,
		Wait:      time.Minute,
	}
}

func TestDelayedTiersFake(t *testing.T) {
	delaytest.Run(t, delayHarness(newFake(t), nil))
}

// TestDelayedTiers runs the suite on the real Kafka, restarting the
// broker while a record waits in its tier topic.
func TestDelayedTiers(t *testing.T) {
	brokers := testenv.NeedKafka(t)
	delaytest.Run(t, delayHarness(brokers, func(t testing.TB) { testenv.RestartService(t, "kafka") }))
}
