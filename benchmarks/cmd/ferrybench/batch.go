package main

import (
	"context"
	"fmt"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// vFerryBatch is ferry with a batch handler (SubscribeBatch, default
// limits: 256 messages, 1 MiB, 10 ms), measured in the consume cells only
// (consume-c1, consume-c16: the subscriber's concurrency, so up to that
// many batches at once) against the same raw baseline.
const vFerryBatch = "ferry-batch"

// batchPrefetch is the AMQP prefetch of the ferry-batch variant: a batch
// holds at most prefetch/concurrency messages (the broker sends no more
// unacknowledged), so the default (max(256, 16 × concurrency)) would cut
// batches of 16 at concurrency 16.
const batchPrefetch = 4096

func init() {
	extraVariants = append(extraVariants, vFerryBatch)
	variantDoc[vFerryBatch] = "ferry with a batch handler (`SubscribeBatch`, default limits: 256 messages, 1 MiB, 10 ms; amqp with `WithPrefetch(4096)`, since a batch holds at most prefetch/concurrency messages), consume cells only; the handler checks every message of its batch and returns nil, so each batch settles at once (kafka: marks for the contiguous commit; amqp: one multiple ack where contiguous)."
}

// applicable reports whether variant v has a cell for workload w.
func applicable(w workload, v string) bool { return v != vFerryBatch || isConsume(w) }

func batchHandler(chk *checker) message.BatchHandler {
	return func(_ context.Context, ms []*message.Message) error {
		for _, m := range ms {
			chk.got(m.Payload)
		}
		return nil
	}
}

func (s *kafkaSystem) ferryBatch() (*kafkaVariant, error) {
	kv, err := s.ferry()
	if err != nil {
		return nil, err
	}
	kv.consume = func(ctx context.Context, topic, group string, chk *checker, concurrency int) error {
		sub, err := kafka.NewSubscriber(s.brokers, kafka.WithGroup(group), kafka.WithConcurrency(concurrency), kafka.WithoutTopicCreation())
		if err != nil {
			return err
		}
		defer sub.Close()
		return runUntil(ctx, chk, func(ctx context.Context) error {
			return sub.SubscribeBatch(ctx, topic, batchHandler(chk))
		})
	}
	return kv, nil
}

func (s *amqpSystem) ferryBatch() (*amqpVariant, error) {
	av, err := s.ferry()
	if err != nil {
		return nil, err
	}
	av.consume = func(ctx context.Context, topic string, chk *checker, concurrency int) error {
		sub, err := amqp.NewSubscriber(s.url, amqp.WithGroup(amqpGroup), amqp.WithConcurrency(concurrency), amqp.WithPrefetch(batchPrefetch))
		if err != nil {
			return err
		}
		defer sub.Close()
		return runUntil(ctx, chk, func(ctx context.Context) error {
			return sub.SubscribeBatch(ctx, topic, batchHandler(chk))
		})
	}
	return av, nil
}

// ferryBatch is the inmem consume cell with a batch handler: a backlog
// published in setup, drained by SubscribeBatch.
func (s *inmemSystem) ferryBatch(w workload, size, n int) (*cell, error) {
	if !isConsume(w) {
		return nil, errUnknown(w, vFerryBatch)
	}
	b, err := inmem.NewBroker()
	if err != nil {
		return nil, err
	}
	pub, err := inmem.NewPublisher(b)
	if err != nil {
		return nil, err
	}
	c := &cell{n: n, close: func() { _ = pub.Close(); _ = b.Close() }}
	ps := getPayloads(n, size).data
	c.setup = func(ctx context.Context) error {
		return batches(n, cfg.batch, func(lo, hi int) error { return pub.Publish(ctx, topicName, ferryMsgs(ps[lo:hi])...) })
	}
	c.chk = newChecker(n, size)
	c.run = func(ctx context.Context) error {
		sub, err := inmem.NewSubscriber(b, inmem.WithGroup("bench"), inmem.WithConcurrency(conc(w)))
		if err != nil {
			return err
		}
		defer sub.Close()
		return runUntil(ctx, c.chk, func(ctx context.Context) error {
			return sub.SubscribeBatch(ctx, topicName, batchHandler(c.chk))
		})
	}
	return c, nil
}

// cpuRatio is a's median CPU time per message over b's: a figure that
// depends less on how busy the broker and the machine are than
// throughput does.
func cpuRatio(a, b *result) string {
	if a == nil || b == nil || len(a.samples) == 0 || len(b.samples) == 0 {
		return "–"
	}
	f := func(s sample) float64 { return perMsgUS(s.cpu, s.n) }
	ma, _, _ := stats(a.samples, f)
	mb, _, _ := stats(b.samples, f)
	if mb == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", ma/mb)
}
