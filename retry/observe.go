package retry

import (
	"context"
	"log/slog"

	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// WithObserver reports the middleware's events to o (message.Observer),
// with the handler's context: each attempt that will be retried
// (message.EventRetry: Attempt, Delay, Err) and each dead-letter publish
// (message.EventDeadLettered: DeadLetterTopic, Attempt as the attempts
// recorded in the copy, Err, and PublishErr when the publish failed).
// otelferry's Telemetry is one: it counts them and marks the process span.
// It adds to OnRetry and OnDeadLetter, and several WithObserver calls add
// up. A nil or typed-nil o is an error wrapping message.ErrInvalidConfig.
// Default: none.
func WithObserver(o message.Observer) Option {
	return Option{func(c *config) error {
		if isnil.Is(o) {
			return invalid("WithObserver: observer is nil")
		}
		c.onRetry = thenRetry(c.onRetry, func(ctx context.Context, ev RetryEvent) {
			e := message.MessageEvent(message.EventRetry, ev.Message)
			e.Attempt, e.Delay, e.Err = ev.Attempt, ev.Delay, ev.Err
			o.Observe(ctx, e)
		})
		c.onDeadLetter = thenDeadLetter(c.onDeadLetter, func(ctx context.Context, ev DeadLetterEvent) {
			e := message.MessageEvent(message.EventDeadLettered, ev.Message)
			e.Attempt, e.DeadLetterTopic, e.Err, e.PublishErr = ev.Attempts, ev.Topic, ev.Err, ev.PublishErr
			o.Observe(ctx, e)
		})
		return nil
	}}
}

// WithLogger logs the middleware's events to l in the one format of
// message.LogEvents, with the handler's context (so otelferry.LogHandler
// adds the process span's IDs): each retry at Debug, each dead-lettering
// at Warn, a failed dead-letter publish at Error. A nil l logs nothing.
// Default: nil, no logging.
func WithLogger(l *slog.Logger) Option {
	if l == nil {
		return Option{func(*config) error { return nil }}
	}
	return WithObserver(message.LogEvents(l))
}

// thenRetry and thenDeadLetter chain hooks: first, then next.
func thenRetry(first, next func(context.Context, RetryEvent)) func(context.Context, RetryEvent) {
	if first == nil {
		return next
	}
	return func(ctx context.Context, ev RetryEvent) { first(ctx, ev); next(ctx, ev) }
}

func thenDeadLetter(first, next func(context.Context, DeadLetterEvent)) func(context.Context, DeadLetterEvent) {
	if first == nil {
		return next
	}
	return func(ctx context.Context, ev DeadLetterEvent) { first(ctx, ev); next(ctx, ev) }
}
