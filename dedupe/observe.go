package dedupe

import (
	"context"
	"log/slog"

	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// WithObserver reports each skipped duplicate to o as a
// message.EventDuplicateSkipped (Msg, DedupeKey), with the handler's
// context. otelferry's Telemetry is one: it counts them and marks the
// process span. It adds to WithOnDuplicate, and several WithObserver calls
// add up. A nil or typed-nil o is an error wrapping
// message.ErrInvalidConfig. Default: none.
func WithObserver(o message.Observer) Option {
	return func(c *config) error {
		if isnil.Is(o) {
			return invalidConfig("WithObserver(nil)")
		}
		c.onDuplicate = thenDuplicate(c.onDuplicate, func(ctx context.Context, msg *message.Message, key string) {
			ev := message.MessageEvent(message.EventDuplicateSkipped, msg)
			ev.DedupeKey = key
			o.Observe(ctx, ev)
		})
		return nil
	}
}

// WithLogger logs each skipped duplicate to l at Debug, in the one format
// of message.LogEvents, with the handler's context. A nil l logs nothing.
// Default: nil, no logging.
func WithLogger(l *slog.Logger) Option {
	if l == nil {
		return func(*config) error { return nil }
	}
	return WithObserver(message.LogEvents(l))
}

func thenDuplicate(first, next func(context.Context, *message.Message, string)) func(context.Context, *message.Message, string) {
	if first == nil {
		return next
	}
	return func(ctx context.Context, msg *message.Message, key string) { first(ctx, msg, key); next(ctx, msg, key) }
}
