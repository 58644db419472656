package kafka_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
	"github.com/ferrymsg/ferry/retry/retrytest"
)

// shareHarness is harness in share-group mode: each group of the suite is
// a share group, with no per-key order (Features.NoKeyOrder).
func shareHarness(brokers []string, partitions int32) messagetest.Harness {
	h := harness(brokers, partitions, nil)
	kills := new(messagetest.KillSwitches)
	h.NewSubscriber = func(t testing.TB, c messagetest.SubscriberConfig) (message.Subscriber, error) {
		opts := []kafka.SubscriberOption{kafka.WithShareGroup(c.Group), kafka.WithTopicCreation(partitions, -1), fastShare()}
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
	}
	h.Kill = kills.Kill
	h.Features.NoKeyOrder = true
	h.Features.NoBatch = true // SubscribeBatch refuses share mode: records are acknowledged one by one
	return h
}

func TestShareConformanceKfake(t *testing.T) {
	conformance(t, shareHarness(newFake(t), 4))
}

// TestShareConformanceBroker runs the contract and the retry suite in
// share mode on the real broker (the delivery counts, locks and
// redeliveries are the broker's); the dedupe and codec suites, which add
// nothing share-specific, run on kfake only, to keep the run short.
func TestShareConformanceBroker(t *testing.T) {
	h := shareHarness(testenv.NeedKafka(t), 4)
	messagetest.Run(t, h)
	t.Run("retry and dead-lettering", func(t *testing.T) { retrytest.Run(t, h) })
}
