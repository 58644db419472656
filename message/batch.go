package message

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// BatchHandler processes a batch of messages in one call, like Spring
// Kafka's batch listener. Its return value is the acknowledgement of the
// whole batch:
//
//   - nil settles every message;
//   - a *BatchError (found with errors.As, so it may be wrapped) names the
//     failed messages by index: the others settle, except that a failed
//     message is redelivered together with the later messages of its key
//     in the batch (their success is not kept, so the key's order holds);
//     messages of other keys are not affected;
//   - any other error, or a panic, redelivers the whole batch.
//
// A batch is never empty. Inside a batch, the messages of one key are in
// publish order, and no two batches that run at once hold the same key.
// msgs and its elements belong to the handler as for Handler: it may keep
// them, but must not change them (a redelivery passes the same *Message
// again). The slice itself is the handler's to reorder or keep.
type BatchHandler func(ctx context.Context, msgs []*Message) error

// BatchMiddleware wraps a BatchHandler. It is a type of its own, not
// Middleware, so that a per-message middleware cannot be applied to a
// batch by mistake (it would see the batch as one unit: one retry for all,
// one dedupe key for all). Packages that support both kinds offer both
// (retry.NewBatch, dedupe.NewBatch).
type BatchMiddleware func(BatchHandler) BatchHandler

// ChainBatch wraps h in the given batch middleware. mw[0] is the
// outermost. Nil middleware are skipped.
func ChainBatch(h BatchHandler, mw ...BatchMiddleware) BatchHandler {
	for i := len(mw) - 1; i >= 0; i-- {
		if mw[i] != nil {
			h = mw[i](h)
		}
	}
	return h
}

// BatchSubscriber is implemented by every ferry adapter's subscriber
// (inmem, kafka, amqp). SubscribeBatch is Subscribe with a BatchHandler:
// it consumes topic as the subscriber's group, with its concurrency (up to
// that many batches run at once) and redelivery backoff, and blocks and
// returns as Subscribe does. Bad options fail with an error wrapping
// ErrInvalidConfig, a nil handler with ErrNilHandler.
type BatchSubscriber interface {
	SubscribeBatch(ctx context.Context, topic string, h BatchHandler, opts ...BatchOption) error
}

// Batch limits' defaults.
const (
	// DefaultBatchMaxMessages is the default of WithBatchMaxMessages.
	DefaultBatchMaxMessages = 256
	// DefaultBatchMaxBytes is the default of WithBatchMaxBytes (1 MiB).
	DefaultBatchMaxBytes = 1 << 20
	// DefaultBatchMaxWait is the default of WithBatchMaxWait.
	DefaultBatchMaxWait = 10 * time.Millisecond
)

// BatchConfig is the effective configuration of a SubscribeBatch call;
// adapters get it from NewBatchConfig.
type BatchConfig struct {
	// MaxMessages is the most messages in one batch.
	MaxMessages int
	// MaxBytes bounds the sum of the payload sizes in one batch; a single
	// message larger than it is a batch of its own.
	MaxBytes int
	// MaxWait is how long a batch that is not full waits for more
	// messages, counted from when its first message was ready.
	MaxWait time.Duration
}

// BatchOption configures a SubscribeBatch call.
type BatchOption func(*BatchConfig) error

// WithBatchMaxMessages sets the most messages in one batch: a batch is
// handed to the handler as soon as it holds n. Default
// DefaultBatchMaxMessages (256); n must be at least 1. On amqp a batch
// holds at most the channel prefetch divided by the concurrency (see its
// package doc).
func WithBatchMaxMessages(n int) BatchOption {
	return func(c *BatchConfig) error {
		if n < 1 {
			return fmt.Errorf("%w: WithBatchMaxMessages(%d): must be at least 1", ErrInvalidConfig, n)
		}
		c.MaxMessages = n
		return nil
	}
}

// WithBatchMaxBytes bounds the sum of the payload sizes of one batch: a
// batch is handed over as soon as the next message would take it past n.
// A message larger than n on its own is a batch of one. Default
// DefaultBatchMaxBytes (1 MiB); n must be at least 1.
func WithBatchMaxBytes(n int) BatchOption {
	return func(c *BatchConfig) error {
		if n < 1 {
			return fmt.Errorf("%w: WithBatchMaxBytes(%d): must be at least 1", ErrInvalidConfig, n)
		}
		c.MaxBytes = n
		return nil
	}
}

// WithBatchMaxWait sets how long a batch that is not full waits for more
// messages, counted from when its first message was ready: once it is
// over the batch is handed over with what it has (never empty). Zero
// hands over at once whatever is ready. Default DefaultBatchMaxWait
// (10ms); d must not be negative.
func WithBatchMaxWait(d time.Duration) BatchOption {
	return func(c *BatchConfig) error {
		if d < 0 {
			return fmt.Errorf("%w: WithBatchMaxWait(%v): must not be negative", ErrInvalidConfig, d)
		}
		c.MaxWait = d
		return nil
	}
}

// NewBatchConfig applies opts to the defaults. Nil options are skipped; a
// bad value fails with an error wrapping ErrInvalidConfig naming the
// option.
func NewBatchConfig(opts ...BatchOption) (BatchConfig, error) {
	c := BatchConfig{MaxMessages: DefaultBatchMaxMessages, MaxBytes: DefaultBatchMaxBytes, MaxWait: DefaultBatchMaxWait}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return BatchConfig{}, err
		}
	}
	return c, nil
}

// BatchFailure is one failed message of a batch.
type BatchFailure struct {
	// Index is the message's position in the batch handed to the handler.
	Index int
	// Err is why it failed.
	Err error
}

// BatchError is what a BatchHandler returns when some messages of its
// batch failed: the messages not named settle, the named ones (and the
// later messages of their keys in the batch) are redelivered. Build it
// with Fail:
//
//	var be message.BatchError
//	for i, m := range msgs {
//		if err := process(m); err != nil {
//			be.Fail(i, err)
//		}
//	}
//	return be.Err()
//
// A BatchError naming no message, or an index outside the batch, fails
// the whole batch (when in doubt, redeliver). A nil Err of a failure is
// taken as an error too. errors.Is and errors.As see through it to each
// failure's error.
type BatchError struct {
	// Failed lists the failures, in the order they were added.
	Failed []BatchFailure
}

// Fail records the message at index i as failed with err (an error saying
// so when err is nil).
func (e *BatchError) Fail(i int, err error) {
	if err == nil {
		err = errors.New("ferry: failed without an error")
	}
	e.Failed = append(e.Failed, BatchFailure{Index: i, Err: err})
}

// Err returns e when it names a failure and nil otherwise, so a handler
// can end with return be.Err().
func (e *BatchError) Err() error {
	if e == nil || len(e.Failed) == 0 {
		return nil
	}
	return e
}

// Error implements error.
func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ferry: %d messages of the batch failed", len(e.Failed))
	for i, f := range e.Failed {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Failed)-i)
			break
		}
		fmt.Fprintf(&b, "; #%d: %v", f.Index, f.Err)
	}
	return b.String()
}

// Unwrap returns the error of each failure.
func (e *BatchError) Unwrap() []error {
	errs := make([]error, 0, len(e.Failed))
	for _, f := range e.Failed {
		errs = append(errs, f.Err)
	}
	return errs
}

// BatchResults turns a batch handler's result for a batch of n messages
// into one error per message (nil: settled by the handler). A nil err
// gives nil (all settled); a *BatchError naming only indexes in [0, n)
// gives the named errors; any other error (a plain one, a BatchError that
// names nothing or an index outside the batch) gives err for every
// message. Adapters and batch middleware use it to read a result the way
// the dispatcher does.
func BatchResults(err error, n int) []error {
	if err == nil {
		return nil
	}
	errs := make([]error, n)
	var be *BatchError
	if errors.As(err, &be) && len(be.Failed) > 0 {
		ok := true
		for _, f := range be.Failed {
			if f.Index < 0 || f.Index >= n {
				ok = false
				break
			}
		}
		if ok {
			for _, f := range be.Failed {
				e := f.Err
				if e == nil {
					e = errors.New("ferry: failed without an error")
				}
				if errs[f.Index] == nil {
					errs[f.Index] = e
				}
			}
			return errs
		}
	}
	for i := range errs {
		errs[i] = err
	}
	return errs
}
