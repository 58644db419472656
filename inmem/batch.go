package inmem

import (
	"context"
	"fmt"

	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

var _ message.BatchSubscriber = (*Subscriber)(nil)

// SubscribeBatch is Subscribe with a batch handler: it joins the
// subscriber's group on topic and calls h with batches cut from the keyed
// dispatcher (see message.BatchHandler and the package doc, "Batches"):
// at most the subscriber's concurrency batches at once, no key in two of
// them, a key's messages in publish order. opts set the batch limits
// (message.WithBatchMaxMessages, WithBatchMaxBytes, WithBatchMaxWait;
// defaults 256 messages, 1 MiB, 10ms). A nil h fails with
// message.ErrNilHandler, a bad option with message.ErrInvalidConfig. It
// blocks and returns as Subscribe does; a partition's commit point moves
// only past settled messages, so a failed message holds it until it
// settles.
func (s *Subscriber) SubscribeBatch(ctx context.Context, topicName string, h message.BatchHandler, opts ...message.BatchOption) error {
	if h == nil {
		return fmt.Errorf("inmem: subscribe %q: %w", topicName, message.ErrNilHandler)
	}
	bc, err := message.NewBatchConfig(opts...)
	if err != nil {
		return fmt.Errorf("inmem: subscribe %q: %w", topicName, err)
	}
	return s.subscribe(ctx, topicName, nil, &dispatch.Batch{Handler: h, Limits: bc})
}
