package messagetest_test

import (
	"context"
	"errors"
	"sync"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

// bsub wraps an adapter's subscriber, replacing its SubscribeBatch.
type bsub struct {
	message.Subscriber
	batch func(ctx context.Context, topic string, h message.BatchHandler, opts ...message.BatchOption) error
}

func (s *bsub) SubscribeBatch(ctx context.Context, topic string, h message.BatchHandler, opts ...message.BatchOption) error {
	return s.batch(ctx, topic, h, opts...)
}

// wrapBatch returns a bsub whose SubscribeBatch calls the adapter's with
// the handler wrapped by w (and the options passed through by opts).
func wrapBatch(s message.Subscriber, w func(message.BatchHandler) message.BatchHandler, keepOpts bool) *bsub {
	bs := s.(message.BatchSubscriber)
	return &bsub{Subscriber: s, batch: func(ctx context.Context, topic string, h message.BatchHandler, opts ...message.BatchOption) error {
		if !keepOpts {
			opts = nil
		}
		if h == nil {
			return bs.SubscribeBatch(ctx, topic, nil, opts...)
		}
		return bs.SubscribeBatch(ctx, topic, w(h), opts...)
	}}
}

// batchMutants break the batch handlers' promises (batch.go).
var batchMutants = []mutant{
	{
		name: "batch: settles every message of a batch, failed ones too",
		fails: []string{
			"batch: per-key order across batches at concurrency 8 with random partial failures",
			"batch: a failed message holds its partition's commit point until it settles",
		},
		passes: []string{"batch: round trip keeps ID, key, payload and headers, each message once"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return wrapBatch(s, func(h message.BatchHandler) message.BatchHandler {
				return func(ctx context.Context, msgs []*message.Message) error {
					_ = h(ctx, msgs)
					return nil
				}
			}, true)
		},
	},
	{
		name:  "batch: runs each message of a batch on its own, all at once",
		fails: []string{"batch: per-key order across batches at concurrency 8 with random partial failures"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return wrapBatch(s, func(h message.BatchHandler) message.BatchHandler {
				return func(ctx context.Context, msgs []*message.Message) error {
					var mu sync.Mutex
					var be message.BatchError
					var wg sync.WaitGroup
					for i, m := range msgs {
						wg.Go(func() {
							if err := h(ctx, []*message.Message{m}); err != nil {
								mu.Lock()
								be.Fail(i, errors.New("failed"))
								mu.Unlock()
							}
						})
					}
					wg.Wait()
					return be.Err()
				}
			}, true)
		},
	},
	{
		name:   "batch: ignores the batch limits",
		fails:  []string{"batch: batches never pass the count and byte limits, and a lone message is handed over"},
		passes: []string{"batch: round trip keeps ID, key, payload and headers, each message once"},
		sub: func(s message.Subscriber, _ *messagetest.SubscriberConfig) message.Subscriber {
			return wrapBatch(s, func(h message.BatchHandler) message.BatchHandler { return h }, false)
		},
	},
}

func init() { mutants = append(mutants, batchMutants...) }
