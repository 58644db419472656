package retry

import (
	"context"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// NewBatch returns the retry middleware for batch handlers
// (message.BatchHandler), with New's options and policy applied to each
// message of a batch on its own:
//
//   - only the failed messages are retried: the handler's result is read
//     as the subscriber reads it (message.BatchResults: a
//     *message.BatchError names the failed ones, any other error or a
//     panic fails them all), and each failed message gets its own attempt
//     count, backoff and classification (Permanent, WithNotRetryable,
//     WithRedeliver);
//   - a failed message that has attempts left is returned in the
//     *message.BatchError with a message.RedeliverAfter error carrying its
//     backoff, so the subscriber redelivers it (with the later messages of
//     its key in the batch) after that delay without holding a worker;
//   - a message whose attempts are exhausted, or whose error is permanent,
//     is dead-lettered with its own error (WithDeadLetter) and settles; if
//     its dead-letter publish fails it stays failed, and its redelivery
//     publishes it again without passing it to the handler. The later
//     messages of its key are not passed to the handler in that case
//     either: they are redelivered after it.
//
// Which middleware wraps which handler: New's message.Middleware wraps a
// message.Handler and NewBatch's message.BatchMiddleware wraps a
// message.BatchHandler; the two types do not convert into each other, so
// a per-message retry cannot silently retry whole batches. Put the batch
// dedupe (dedupe.NewBatch) inside it, as for single messages:
// message.ChainBatch(h, retryMW, dedupeMW).
func NewBatch(opts ...Option) (message.BatchMiddleware, error) {
	r, err := newRetrier(opts...)
	if err != nil {
		return nil, err
	}
	return r.wrapBatch, nil
}

func (r *retrier) wrapBatch(next message.BatchHandler) message.BatchHandler {
	if next == nil {
		return nil // Subscribe reports the nil handler
	}
	return func(ctx context.Context, msgs []*message.Message) error {
		var be message.BatchError
		fs := make([]*failure, len(msgs))
		run := make([]*message.Message, 0, len(msgs))
		idx := make([]int, 0, len(msgs))
		var held map[string]bool // keys whose earlier message stays failed
		for i, msg := range msgs {
			if msg == nil {
				run, idx = append(run, msg), append(idx, i)
				continue
			}
			if msg.Key != "" && held[msg.Key] {
				continue // redelivered after its key's failed one
			}
			if msg.Delivery.Attempt > 1 {
				if fs[i] = r.takePending(msg); fs[i] != nil && fs[i].exhausted {
					if err := r.deadLetter(ctx, msg, fs[i]); err != nil {
						be.Fail(i, err)
						if msg.Key != "" {
							if held == nil {
								held = make(map[string]bool)
							}
							held[msg.Key] = true
						}
					}
					continue
				}
			}
			run, idx = append(run, msg), append(idx, i)
		}
		if len(run) > 0 {
			errs := message.BatchResults(adapter.CallBatch(ctx, next, run), len(run))
			for j, err := range errs {
				if err == nil {
					continue
				}
				i := idx[j]
				if msgs[i] == nil {
					be.Fail(i, err)
					continue
				}
				if res := r.failed(ctx, msgs[i], fs[i], err); res != nil {
					be.Fail(i, res)
				}
			}
		}
		return be.Err()
	}
}
