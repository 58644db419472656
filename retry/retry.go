package retry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// maxPending bounds the in-memory records of failing messages (see
// retrier.pending).
const maxPending = 4096

// New returns the retry middleware: it retries a failing handler with
// backoff, then dead-letters the message (WithDeadLetter) or returns its
// error for redelivery. It returns an error wrapping message.ErrInvalidConfig
// when an option is invalid, naming the option.
//
// The middleware never waits itself: between two attempts it returns a
// message.RedeliverAfter error carrying the backoff, and the subscriber
// delivers the message again after that delay without holding a worker
// (see the package doc).
//
// The middleware is safe for concurrent use by any number of subscribers
// and handlers.
func New(opts ...Option) (message.Middleware, error) {
	r, err := newRetrier(opts...)
	if err != nil {
		return nil, err
	}
	return r.wrap, nil
}

type retrier struct {
	config

	mu sync.Mutex
	// pending remembers, per delivered message, what the middleware knows
	// between its deliveries: the failures so far and the backoff policy
	// while it waits for the next attempt, or that it is exhausted and
	// only its dead-letter publish failed.
	pending map[pendingKey]*failure
}

// failure is what the middleware knows about a failing message.
type failure struct {
	attempts  int // failed handler calls, earlier deliveries included
	first     time.Time
	last      time.Time
	err       error
	bo        backoff.BackOff // the message's policy, from its first failure on
	exhausted bool            // given up; the dead-letter publish failed
}

// pendingKey identifies a delivered message across redeliveries to the
// same group.
type pendingKey struct {
	topic, group, id string
	partition        int32
	offset           int64
}

func newRetrier(opts ...Option) (*retrier, error) {
	r := &retrier{config: defaultConfig()}
	for _, o := range opts {
		if o.apply == nil {
			return nil, invalid("zero Option value")
		}
		if err := o.apply(&r.config); err != nil {
			return nil, err
		}
	}
	if r.maxAttempts == 0 && r.maxElapsed == 0 {
		return nil, invalid("WithMaxAttempts(0) needs WithMaxElapsedTime > 0: otherwise a failing message is retried forever")
	}
	if r.topicFor == nil {
		r.topicFor = defaultTopic
	}
	return r, nil
}

func defaultTopic(msg *message.Message) string {
	if msg.Delivery.Topic == "" {
		return ""
	}
	return msg.Delivery.Topic + DefaultDeadLetterSuffix
}

func (r *retrier) wrap(next message.Handler) message.Handler {
	if next == nil {
		// A programmer error at construction time; the subscriber
		// reports nil handlers itself, keep that behaviour.
		return nil
	}
	return func(ctx context.Context, msg *message.Message) error {
		if msg == nil {
			// Not a delivery (subscribers never pass nil): nothing to
			// retry or dead-letter; the handler decides.
			return adapter.Call(ctx, next, msg)
		}
		var f *failure
		if msg.Delivery.Attempt > 1 {
			// A redelivery: of a message waiting for its next attempt,
			// or of one this process already gave up on, whose
			// dead-letter publish failed. That one is published again
			// without calling the handler.
			if f = r.takePending(msg); f != nil && f.exhausted {
				return r.deadLetter(ctx, msg, f)
			}
		}
		err := adapter.Call(ctx, next, msg)
		if err == nil {
			return nil
		}
		return r.failed(ctx, msg, f, err)
	}
}

// failed decides what follows a failed handler call: another attempt
// after a backoff (a message.RedeliverAfter error: the subscriber waits
// and delivers the message again), the dead-letter topic, or the error as
// it is. f is what earlier deliveries of the message in this process
// left, or nil.
func (r *retrier) failed(ctx context.Context, msg *message.Message, f *failure, err error) error {
	now := r.now()
	if f == nil {
		f = &failure{first: now}
	}
	// Earlier deliveries count as one attempt each, also those of which
	// this process knows nothing (a broker's redelivery after a crash).
	f.attempts = max(msg.Delivery.Attempt, f.attempts+1, 1)
	f.last, f.err = now, err
	if ctx.Err() != nil {
		// Shutting down: the message is redelivered, not dead-lettered.
		return err
	}
	if errors.Is(err, message.ErrRedeliver) || r.redeliver != nil && r.redeliver(err) {
		r.putPending(msg, f)
		return err
	}
	if d, ok := r.nextDelay(f, now, err); ok {
		if r.onRetry != nil {
			r.onRetry(ctx, RetryEvent{Message: msg, Attempt: f.attempts, Err: err, Delay: d})
		}
		r.putPending(msg, f)
		return message.RedeliverAfter(err, d)
	}
	if r.pub == nil {
		return err
	}
	return r.deadLetter(ctx, msg, f)
}

// nextDelay returns the wait before the next attempt, or false when the
// attempts are over: a permanent error, WithMaxAttempts reached, the
// policy stopped, or WithMaxElapsedTime would be passed. A handler error
// that carries its own delay (message.RedeliverAfter) sets the wait.
func (r *retrier) nextDelay(f *failure, now time.Time, err error) (time.Duration, bool) {
	if r.permanent(err) {
		return 0, false
	}
	if r.maxAttempts > 0 && f.attempts >= r.maxAttempts {
		return 0, false
	}
	if f.bo == nil {
		f.bo = r.newBackoff()
	}
	d := backoff.Stop
	if f.bo != nil {
		d = f.bo.NextBackOff()
	}
	if d == backoff.Stop || d < 0 {
		return 0, false
	}
	if own, ok := message.RedeliveryDelay(err); ok {
		d = own
	}
	if r.maxElapsed > 0 && now.Sub(f.first)+d > r.maxElapsed {
		return 0, false
	}
	return d, true
}

func (r *retrier) permanent(err error) bool {
	return IsPermanent(err) || (r.notRetryable != nil && r.notRetryable(err))
}

// deadLetter publishes a copy of msg to its dead-letter topic. It returns
// nil when the copy is published (the original is then settled) and an
// error otherwise (the original is redelivered).
func (r *retrier) deadLetter(ctx context.Context, msg *message.Message, f *failure) error {
	// WithDelayedRetry: the next delay tier, or the DLT as the message of
	// its own topic (delayed.go).
	msg, f, sent, err := r.delayedRetry(ctx, msg, f)
	if sent {
		return err
	}
	topic := r.topicFor(msg)
	if topic == "" {
		return fmt.Errorf("retry: cannot dead-letter message %q: no dead-letter topic (empty Delivery.Topic or WithDeadLetterTopic returned \"\"); last error: %w", msg.ID, f.err)
	}
	c := msg.Clone()
	if c.Headers == nil {
		c.Headers = make(map[string]string, 10)
	}
	// A per-message TTL would let the broker drop the parked copy: the
	// AMQP adapter's expiration property travels in this header. RabbitMQ's
	// own dead-lettering removes it too.
	delete(c.Headers, amqpExpirationHeader)
	r.writeHeaders(c.Headers, msg, f)
	pctx := ctx
	if r.spring && msg.Delivery.Partition >= 0 {
		// Spring's default destination resolver: the same partition
		// number of the DLT (the kafka publisher falls back to the key's
		// partition when the DLT has fewer).
		pctx = adapter.WithPartition(ctx, msg.Delivery.Partition)
	}
	perr := r.pub.Publish(pctx, topic, c)
	if r.onDeadLetter != nil {
		r.onDeadLetter(ctx, DeadLetterEvent{Message: msg, Topic: topic, Attempts: f.attempts, Err: f.err, PublishErr: perr})
	}
	if perr != nil {
		f.exhausted, f.bo = true, nil
		r.putPending(msg, f)
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(perr, ctxErr) {
			return ctxErr
		}
		return fmt.Errorf("retry: dead-letter message %q to %q: %w (handler error: %w)", msg.ID, topic, perr, f.err)
	}
	return nil
}

// amqpExpirationHeader is amqp.ExpirationHeader, the AMQP adapter's
// per-message TTL (retry imports no adapter).
const amqpExpirationHeader = "amqp-expiration"

func keyOf(msg *message.Message) (pendingKey, bool) {
	k := pendingKey{topic: msg.Delivery.Topic, group: msg.Delivery.Group, id: msg.ID,
		partition: msg.Delivery.Partition, offset: msg.Delivery.Offset}
	if k.id == "" && k.offset < 0 {
		return k, false // nothing identifies the message across redeliveries
	}
	return k, true
}

func (r *retrier) putPending(msg *message.Message, f *failure) {
	k, ok := keyOf(msg)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = make(map[pendingKey]*failure)
	}
	if len(r.pending) >= maxPending {
		// Forgetting a record only costs extra handler calls on the
		// redelivery; nothing is lost.
		for old := range r.pending {
			delete(r.pending, old)
			break
		}
	}
	r.pending[k] = f
}

func (r *retrier) takePending(msg *message.Message) *failure {
	k, ok := keyOf(msg)
	if !ok {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.pending[k]
	if f != nil {
		delete(r.pending, k)
	}
	return f
}
