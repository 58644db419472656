package message

import (
	"context"
	"log/slog"
)

// LogOption configures LogEvents.
type LogOption func(*logObserver)

// LogHandlerErrorsAt sets the level of EventHandlerError records. Default:
// slog.LevelDebug, since a handler error is the application's to report
// (the handler's own log, the retry middleware's dead-lettering) and a
// failing message would otherwise log once per redelivery.
func LogHandlerErrorsAt(level slog.Level) LogOption {
	return func(o *logObserver) { o.handlerErr = level }
}

// LogEvents returns an Observer that writes events to l, the one log
// format of ferry: every adapter's and middleware's WithLogger is
// LogEvents(l), so the same event has the same message, level and
// attribute names on every broker. It returns nil for a nil l.
//
// Levels: connection lost and commit failed Warn, connection restored
// Info, dead-lettered Warn (Error when the dead-letter publish failed),
// handler failed Debug (LogHandlerErrorsAt), retry, duplicate skipped and
// publish failed Debug; published, handled and lag are not logged. The
// message is "ferry: " and the kind ("ferry: handler failed"). Attributes,
// where the event has them: system, topic, group, partition, offset,
// delivery_tag, id, attempt, delay, dlt, dedupe_key, count, failed,
// broker, role, state, err and publish_err. A record is written with the
// event's context, so a handler wrapping l's handler (such as otelferry's
// LogHandler) finds the span of a handler's events in it.
func LogEvents(l *slog.Logger, opts ...LogOption) Observer {
	if l == nil {
		return nil
	}
	o := &logObserver{l: l, handlerErr: slog.LevelDebug}
	for _, opt := range opts {
		if opt != nil {
			opt(o)
		}
	}
	return o
}

type logObserver struct {
	l          *slog.Logger
	handlerErr slog.Level
}

func (o *logObserver) level(ev *Event) (slog.Level, bool) {
	switch ev.Kind {
	case EventConnectionLost, EventCommitFailed:
		return slog.LevelWarn, true
	case EventConnectionRestored:
		return slog.LevelInfo, true
	case EventDeadLettered:
		if ev.PublishErr != nil {
			return slog.LevelError, true
		}
		return slog.LevelWarn, true
	case EventHandlerError:
		return o.handlerErr, true
	case EventRetry, EventDuplicateSkipped, EventPublishFailed:
		return slog.LevelDebug, true
	}
	return 0, false
}

func (o *logObserver) Observe(ctx context.Context, ev Event) {
	level, ok := o.level(&ev)
	if !ok || !o.l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	str("system", ev.System)
	str("topic", ev.Topic)
	str("group", ev.Group)
	if m := ev.Msg; m != nil {
		d := &m.Delivery
		if d.Partition >= 0 {
			attrs = append(attrs, slog.Int("partition", int(d.Partition)))
		}
		if d.Offset >= 0 {
			attrs = append(attrs, slog.Int64("offset", d.Offset))
		}
		if d.DeliveryTag != 0 {
			attrs = append(attrs, slog.Uint64("delivery_tag", d.DeliveryTag))
		}
		str("id", m.ID)
	} else if ev.Partition >= 0 {
		attrs = append(attrs, slog.Int("partition", int(ev.Partition)))
	}
	if ev.Attempt > 0 {
		attrs = append(attrs, slog.Int("attempt", ev.Attempt))
	}
	if ev.Delay > 0 {
		attrs = append(attrs, slog.Duration("delay", ev.Delay))
	}
	str("dlt", ev.DeadLetterTopic)
	str("dedupe_key", ev.DedupeKey)
	if ev.Count > 0 {
		attrs = append(attrs, slog.Int("count", ev.Count))
	}
	if ev.Failed > 0 {
		attrs = append(attrs, slog.Int("failed", ev.Failed))
	}
	str("broker", ev.Broker)
	str("role", ev.Role)
	str("state", ev.State)
	if ev.Err != nil {
		attrs = append(attrs, slog.String("err", ev.Err.Error()))
	}
	if ev.PublishErr != nil {
		attrs = append(attrs, slog.String("publish_err", ev.PublishErr.Error()))
	}
	o.l.LogAttrs(ctx, level, "ferry: "+ev.Kind.String(), attrs...)
}
