package codec

import (
	"context"
	"fmt"

	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// BatchHandler is Handler for batch consumers (message.BatchHandler, a
// BatchSubscriber's SubscribeBatch): it decodes every message of the batch
// with c and calls fn once with the values that decoded and their
// messages, vs[i] from msgs[i]. The result is per message, as the batch
// contract reads it (message.BatchResults):
//
//   - a message that does not decode fails with its *DecodeError
//     (permanent: retry.NewBatch dead-letters it after one attempt and
//     settles it) and is not passed to fn;
//   - fn's *message.BatchError names failures by index into the vs and
//     msgs fn was given; they are mapped back to the batch's indexes;
//   - any other error from fn fails every message fn was given (not the
//     undecodable ones, which keep their DecodeError).
//
// The batch contract redelivers a failed message with the later messages
// of its key in the batch, so without retry.NewBatch, a message after an
// undecodable one of its key is handled by fn and again on the
// redelivery; retry.NewBatch (which settles the dead-lettered message)
// avoids that. fn is not called when no message decodes. A nil c or fn
// gives a batch handler that fails every batch with an error wrapping
// message.ErrInvalidConfig.
func BatchHandler[T any](c Codec[T], fn func(ctx context.Context, vs []T, msgs []*message.Message) error) message.BatchHandler {
	if isnil.Is(c) || fn == nil {
		err := fmt.Errorf("codec: BatchHandler: %w: the codec and the function must not be nil (codec %T)", message.ErrInvalidConfig, c)
		return func(context.Context, []*message.Message) error { return err }
	}
	return func(ctx context.Context, msgs []*message.Message) error {
		errs := make([]error, len(msgs)) // per batch index
		vs := make([]T, 0, len(msgs))
		good := make([]*message.Message, 0, len(msgs))
		idx := make([]int, 0, len(msgs))
		failed := false
		for i, m := range msgs {
			v, err := Decode(c, m)
			if err != nil {
				errs[i], failed = err, true
				continue
			}
			vs, good, idx = append(vs, v), append(good, m), append(idx, i)
		}
		if len(good) > 0 {
			for j, err := range message.BatchResults(fn(ctx, vs, good), len(good)) {
				if err != nil {
					errs[idx[j]], failed = err, true
				}
			}
		}
		if !failed {
			return nil
		}
		var be message.BatchError
		for i, err := range errs {
			if err != nil {
				be.Fail(i, err)
			}
		}
		return be.Err()
	}
}
