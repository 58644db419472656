package kafka_test

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter/delay"
	"github.com/ferrymsg/ferry/internal/delaytest"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
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

// TestDelayedTierSpringHeaders reads a tier record as a Spring consumer
// would (raw kgo): Spring's retry_topic-* headers in Spring's encodings,
// next to ferry's.
func TestDelayedTierSpringHeaders(t *testing.T) {
	brokers := newFake(t)
	h := delayHarness(brokers, nil)
	topic := h.Topic(t)
	pub := h.NewPublisher(t)
	defer pub.Close()
	p, err := retry.NewPolicy(retry.WithMaxAttempts(1), retry.SpringHeaders(), retry.WithDelayedRetry(pub, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sub := h.NewSubscriber(t, "g")
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	failed := make(chan struct{}, 1)
	chain := message.Chain(func(context.Context, *message.Message) error {
		failed <- struct{}{}
		return errors.New("down")
	}, p.Middleware())
	go func() { done <- p.Subscribe(ctx, sub, topic, chain) }()
	sent := time.UnixMilli(1700000000123)
	if err := pub.Publish(ctx, topic, &message.Message{ID: "o-1", Key: "k", Time: sent}); err != nil {
		t.Fatal(err)
	}
	<-failed
	raw, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(p.TierTopics(topic)[0]),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	var rec *kgo.Record
	for rec == nil {
		fs := raw.PollFetches(pctx)
		if pctx.Err() != nil {
			t.Fatal("no record in the tier topic")
		}
		fs.EachRecord(func(r *kgo.Record) { rec = r })
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	hs := map[string][]byte{}
	for _, h := range rec.Headers {
		hs[h.Key] = h.Value
	}
	if v := hs["retry_topic-attempts"]; len(v) != 4 || binary.BigEndian.Uint32(v) != 2 {
		t.Errorf("retry_topic-attempts = % x, want the 4-byte big-endian 2", v)
	}
	if ms, ok := delay.ParseBigInt(string(hs["retry_topic-original-timestamp"])); !ok || ms != sent.UnixMilli() {
		t.Errorf("retry_topic-original-timestamp = % x, want BigInteger bytes of %d", hs["retry_topic-original-timestamp"], sent.UnixMilli())
	}
	due, ok := delay.ParseTime(string(hs[delay.HeaderDue]))
	if ms, ok2 := delay.ParseBigInt(string(hs["retry_topic-backoff-timestamp"])); !ok || !ok2 || ms != due.UnixMilli() {
		t.Errorf("retry_topic-backoff-timestamp = % x, want BigInteger bytes of the due time %v", hs["retry_topic-backoff-timestamp"], due)
	}
	if !rec.Timestamp.Equal(sent) {
		t.Errorf("tier record timestamp %v, want the original %v", rec.Timestamp, sent)
	}
}
