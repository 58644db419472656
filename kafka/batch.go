package kafka

import (
	"context"
	"fmt"

	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

var _ message.BatchSubscriber = (*Subscriber)(nil)

// SubscribeBatch is Subscribe with a batch handler: it joins the consumer
// group for topic and calls h with batches cut from the keyed dispatcher
// (see message.BatchHandler and the package doc, "Batches"): at most the
// subscriber's concurrency batches at once, no key in two of them, a
// key's records in partition order. A batch may hold records of several
// partitions. opts set the batch limits (message.WithBatchMaxMessages,
// WithBatchMaxBytes, WithBatchMaxWait; defaults 256 records, 1 MiB of
// values, 10ms). Commits stay contiguous: a partition's commit point
// never passes a record that is not settled, so a failed record holds it
// until its redelivery settles. A nil h fails with message.ErrNilHandler;
// a bad option, or a Subscriber in share mode (WithShareGroup, whose
// records are acknowledged one by one), with message.ErrInvalidConfig. It
// blocks and returns as Subscribe does.
func (s *Subscriber) SubscribeBatch(ctx context.Context, topic string, h message.BatchHandler, opts ...message.BatchOption) error {
	if h == nil {
		return fmt.Errorf("kafka: subscribe %q: %w", topic, message.ErrNilHandler)
	}
	if s.cfg.share {
		return fmt.Errorf("kafka: subscribe %q: %w: batch handlers are not available in share mode", topic, message.ErrInvalidConfig)
	}
	bc, err := message.NewBatchConfig(opts...)
	if err != nil {
		return fmt.Errorf("kafka: subscribe %q: %w", topic, err)
	}
	return s.subscribe(ctx, topic, nil, &dispatch.Batch{Handler: h, Limits: bc})
}

// batchSettle completes bat (nil for Subscribe) with the settlement of a
// batch's records: each run of records of one partition is settled under
// one lock of its tracker.
func (sub *subscription) batchSettle(bat *dispatch.Batch) *dispatch.Batch {
	if bat == nil {
		return nil
	}
	bat.Settled = func(dls []*dispatch.Delivery) {
		for _, dl := range dls {
			sub.observeHandled(dl)
		}
		for i := 0; i < len(dls); {
			ps := dls[i].Ref.(*recBatch).ps
			j := i + 1
			for j < len(dls) && dls[j].Ref.(*recBatch).ps == ps {
				j++
			}
			ps.settleAll(dls[i:j])
			i = j
		}
	}
	return bat
}

// settleAll is settle for records of ps, under one lock: each stretch of
// records adjacent in one fetched batch (the usual case: a batch cut from
// a partition's queue in order) in one step.
func (ps *partState) settleAll(dls []*dispatch.Delivery) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.dead {
		return
	}
	for i := 0; i < len(dls); {
		rb, from := dls[i].Ref.(*recBatch), int(recOf(dls[i]).idx)
		to := from + 1
		for i++; i < len(dls) && dls[i].Ref == any(rb) && int(recOf(dls[i]).idx) == to; i++ {
			to++
		}
		ps.log.SettleRange(&rb.run, from, to)
	}
}
