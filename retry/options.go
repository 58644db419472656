package retry

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// Defaults of New's options.
const (
	// DefaultMaxAttempts is the total number of handler calls a message
	// gets before it is dead-lettered (WithMaxAttempts).
	DefaultMaxAttempts = 3
	// DefaultInitialBackoff and DefaultMaxBackoff bound the default
	// exponential backoff between attempts (WithExponentialBackoff).
	DefaultInitialBackoff = 100 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	// DefaultDeadLetterSuffix is appended to a message's topic to name its
	// dead-letter topic (WithDeadLetterTopic).
	DefaultDeadLetterSuffix = ".DLT"
)

// Jitter and growth of the exponential policy (WithExponentialBackoff):
// those of adapter.NewBackoff, the one exponential backoff of ferry (the
// subscribers' redelivery and the AMQP reconnection use it too).
const (
	// ExponentialMultiplier is the growth factor between attempts.
	ExponentialMultiplier = adapter.BackoffMultiplier
	// ExponentialRandomization spreads each delay uniformly over
	// [d·(1-r), d·(1+r)] so that many failing consumers do not retry in
	// step.
	ExponentialRandomization = adapter.BackoffRandomization
)

// Option configures New.
type Option struct {
	apply func(*config) error
}

// RetryEvent describes a failed attempt that will be retried. It is passed
// to the OnRetry hook.
type RetryEvent struct {
	// Message is the message being handled.
	Message *message.Message
	// Attempt is the number of the attempt that failed (1 for the first
	// handler call of the first delivery; see the package doc).
	Attempt int
	// Err is the error of that attempt.
	Err error
	// Delay is how long the subscriber waits before it delivers the message
	// again for the next attempt (the middleware itself never waits).
	Delay time.Duration
	// Tier is the delay tier the message is sent to (WithDelayedRetry),
	// 1 for the first; 0 for an in-process retry.
	Tier int
	// TierTopic is that tier's topic; "" for an in-process retry.
	TierTopic string
}

// DeadLetterEvent describes a dead-letter publish. It is passed to the
// OnDeadLetter hook.
type DeadLetterEvent struct {
	// Message is the original message (not the dead-letter copy).
	Message *message.Message
	// Topic is the dead-letter topic.
	Topic string
	// Attempts is the number of failed attempts recorded in the copy.
	Attempts int
	// Err is the handler error that caused the dead-lettering.
	Err error
	// PublishErr is nil when the copy was published; otherwise the
	// original is returned for redelivery and PublishErr says why.
	PublishErr error
}

type config struct {
	newBackoff   func() backoff.BackOff
	maxAttempts  int
	maxElapsed   time.Duration
	notRetryable func(error) bool
	redeliver    func(error) bool
	pub          message.Publisher
	delayed      *tiers // WithDelayedRetry (delayed.go)
	topicFor     func(*message.Message) string
	spring       bool
	onRetry      func(context.Context, RetryEvent)
	onDeadLetter func(context.Context, DeadLetterEvent)
	errMaxLen    int

	// Test seam.
	now func() time.Time
}

func defaultConfig() config {
	return config{
		newBackoff:  exponential(DefaultInitialBackoff, DefaultMaxBackoff),
		maxAttempts: DefaultMaxAttempts,
		errMaxLen:   DefaultMaxErrorLength,
		now:         time.Now,
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("retry: %w: %s", message.ErrInvalidConfig, fmt.Sprintf(format, args...))
}

func exponential(initial, maxDelay time.Duration) func() backoff.BackOff {
	return func() backoff.BackOff {
		// The middleware enforces WithMaxElapsedTime itself: the policy
		// never stops.
		return adapter.NewBackoff(initial, maxDelay)
	}
}

// WithExponentialBackoff waits initial after the first failure and doubles
// the wait after each further one (ExponentialMultiplier), up to maxDelay,
// each delay randomised by ±50 % (ExponentialRandomization). Default:
// WithExponentialBackoff(DefaultInitialBackoff, DefaultMaxBackoff), i.e.
// 100 ms, 200 ms, 400 ms ... capped at 10 s.
func WithExponentialBackoff(initial, maxDelay time.Duration) Option {
	return Option{func(c *config) error {
		if initial <= 0 {
			return invalid("WithExponentialBackoff: initial delay %v must be positive", initial)
		}
		if maxDelay < initial {
			return invalid("WithExponentialBackoff: max delay %v is less than initial delay %v", maxDelay, initial)
		}
		c.newBackoff = exponential(initial, maxDelay)
		return nil
	}}
}

// WithConstantBackoff waits d between attempts (0 retries at once), like
// Spring's FixedBackOff. Default: exponential (WithExponentialBackoff).
func WithConstantBackoff(d time.Duration) Option {
	return Option{func(c *config) error {
		if d < 0 {
			return invalid("WithConstantBackoff: delay %v is negative", d)
		}
		b := backoff.NewConstantBackOff(d) // stateless: safe to share
		c.newBackoff = func() backoff.BackOff { return b }
		return nil
	}}
}

// WithBackoff uses any github.com/cenkalti/backoff/v4 policy. newPolicy is
// called once per failing message, on its first failure (never on the
// success path), so stateful policies such as *backoff.ExponentialBackOff
// are not shared between concurrent handlers. A policy that returns
// backoff.Stop ends the attempts like an exhausted WithMaxAttempts; its own
// MaxElapsedTime applies from its creation. Default: exponential
// (WithExponentialBackoff).
func WithBackoff(newPolicy func() backoff.BackOff) Option {
	return Option{func(c *config) error {
		if newPolicy == nil {
			return invalid("WithBackoff: policy constructor is nil")
		}
		c.newBackoff = newPolicy
		return nil
	}}
}

// WithMaxAttempts sets the total number of handler calls a message gets,
// the first one included, before it is dead-lettered; 0 means no limit by
// count (WithMaxElapsedTime must then be set). Earlier deliveries count:
// see the package doc. Default: DefaultMaxAttempts (3).
func WithMaxAttempts(n int) Option {
	return Option{func(c *config) error {
		if n < 0 {
			return invalid("WithMaxAttempts(%d): must be 0 (no count limit) or more", n)
		}
		c.maxAttempts = n
		return nil
	}}
}

// WithMaxElapsedTime stops retrying when the next attempt would start more
// than d after the first failure of the message in this process; 0 means no
// time limit. Both limits may be set: the first one reached ends the
// attempts. Default: 0.
func WithMaxElapsedTime(d time.Duration) Option {
	return Option{func(c *config) error {
		if d < 0 {
			return invalid("WithMaxElapsedTime(%v): must be 0 (no time limit) or more", d)
		}
		c.maxElapsed = d
		return nil
	}}
}

// WithNotRetryable classifies errors that must not be retried (validation
// errors, unknown message types): when fn returns true the message skips
// the remaining attempts, like an error wrapped with Permanent. fn is called
// concurrently and must be safe for that. Default: only Permanent errors
// are not retried.
func WithNotRetryable(fn func(error) bool) Option {
	return Option{func(c *config) error {
		if fn == nil {
			return invalid("WithNotRetryable: classifier is nil")
		}
		c.notRetryable = fn
		return nil
	}}
}

// WithRedeliver names more errors that the middleware hands straight back
// to the subscriber, which redelivers the message later: no in-process
// retry, no dead-lettering. Errors wrapping message.ErrRedeliver (such as
// dedupe.ErrInProgress: another consumer holds the message's claim) are
// always treated so; use this for "not now" errors of your own:
//
//	retry.WithRedeliver(func(err error) bool { return errors.Is(err, errRateLimited) })
//
// Each such redelivery still counts as an attempt (see the package doc),
// but a message is never dead-lettered because of such an error. fn is
// called concurrently. Default: none.
func WithRedeliver(fn func(error) bool) Option {
	return Option{func(c *config) error {
		if fn == nil {
			return invalid("WithRedeliver: classifier is nil")
		}
		c.redeliver = fn
		return nil
	}}
}

// WithDeadLetter publishes a message whose attempts are exhausted (or whose
// error is permanent) to its dead-letter topic through pub, then settles
// the original. pub can be any adapter's Publisher (the one of the
// consumed broker, usually). A nil pub, a typed nil included (a nil
// *kafka.Publisher in the interface), makes New fail with
// message.ErrInvalidConfig: it would panic at every dead-letter. Default:
// none: an exhausted message's error is returned to the subscriber, which
// redelivers it.
func WithDeadLetter(pub message.Publisher) Option {
	return Option{func(c *config) error {
		if isnil.Is(pub) {
			return invalid("WithDeadLetter: publisher is nil (%T)", pub)
		}
		c.pub = pub
		return nil
	}}
}

// WithDeadLetterTopic names the dead-letter topic of a message. fn sees the
// delivered message (msg.Delivery.Topic is the consumed topic) and must
// return a non-empty name; an empty one makes the middleware return an
// error (the message is redelivered). Default: msg.Delivery.Topic + ".DLT",
// as Spring Kafka before 3.3. For Spring Kafka 3.3 and later's
// <topic>-dlt, pass SpringDeadLetterTopic.
func WithDeadLetterTopic(fn func(msg *message.Message) string) Option {
	return Option{func(c *config) error {
		if fn == nil {
			return invalid("WithDeadLetterTopic: naming function is nil")
		}
		c.topicFor = fn
		return nil
	}}
}

// SpringHeaders writes Spring Kafka's DeadLetterPublishingRecoverer header
// names and encodings (HeaderSpring* constants) instead of ferry's, so
// Spring consumers read the dead-letter topic as one of their own (the
// package doc maps Go errors to Spring's exception headers), and
// publishes each copy to the original partition number of the DLT, as
// Spring's default destination resolver does (adapter.WithPartition; the
// kafka publisher falls back to the key's partition when the DLT has
// fewer partitions). The attempt count and failure times, for which
// Spring has no header, are still written under ferry's names. It does
// not change the DLT's name: add WithDeadLetterTopic(SpringDeadLetterTopic)
// for Spring's <topic>-dlt. Default: ferry's headers (Header* constants)
// and the key's partition.
func SpringHeaders() Option {
	return Option{func(c *config) error {
		c.spring = true
		return nil
	}}
}

// WithMaxErrorLength truncates the error text written to the dead-letter
// headers to n bytes (at a UTF-8 boundary); 0 means no limit. Default:
// DefaultMaxErrorLength (8 KiB), which keeps panic stacks readable without
// bloating headers.
func WithMaxErrorLength(n int) Option {
	return Option{func(c *config) error {
		if n < 0 {
			return invalid("WithMaxErrorLength(%d): must be 0 (no limit) or more", n)
		}
		c.errMaxLen = n
		return nil
	}}
}

// OnRetry calls fn after each failed attempt that will be retried, before
// the wait, for logs and metrics. fn runs on the handler's goroutine,
// concurrently for different messages; it must not block for long.
// Default: none.
func OnRetry(fn func(ctx context.Context, ev RetryEvent)) Option {
	return Option{func(c *config) error {
		if fn == nil {
			return invalid("OnRetry: hook is nil")
		}
		c.onRetry = thenRetry(c.onRetry, fn) // after WithObserver's (observe.go)
		return nil
	}}
}

// OnDeadLetter calls fn after each dead-letter publish, successful or not
// (ev.PublishErr), for logs and metrics. It is not called without
// WithDeadLetter. fn runs on the handler's goroutine, concurrently for
// different messages; it must not block for long. Default: none.
func OnDeadLetter(fn func(ctx context.Context, ev DeadLetterEvent)) Option {
	return Option{func(c *config) error {
		if fn == nil {
			return invalid("OnDeadLetter: hook is nil")
		}
		c.onDeadLetter = thenDeadLetter(c.onDeadLetter, fn)
		return nil
	}}
}
