package chanadapter

import (
	"context"
	"fmt"

	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// SubscribeBatch is Subscribe with a batch handler: the kit's dispatcher
// cuts the batches (dispatch.Batch), so it is Subscribe with one more
// field set.
func (s *Subscriber) SubscribeBatch(ctx context.Context, topicName string, h message.BatchHandler, opts ...message.BatchOption) error {
	if h == nil {
		return fmt.Errorf("chanadapter: subscribe %q: %w", topicName, message.ErrNilHandler)
	}
	bc, err := message.NewBatchConfig(opts...)
	if err != nil {
		return fmt.Errorf("chanadapter: subscribe %q: %w", topicName, err)
	}
	return s.subscribe(ctx, topicName, nil, &dispatch.Batch{Handler: h, Limits: bc})
}
