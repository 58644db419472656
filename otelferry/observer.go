package otelferry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferrymsg/ferry/message"
)

// Span events and attributes written by Observe into the span of the
// handler's context (the process span of Middleware).
const (
	EventRetry            = "ferry.retry"             // attributes ferry.message.attempt, ferry.retry.delay_ms, exception.message
	EventDeadLettered     = "ferry.dead_lettered"     // attributes ferry.dead_letter.topic, ferry.message.attempt, exception.message
	EventDuplicateSkipped = "ferry.duplicate_skipped" // attribute ferry.dedupe.key

	AttrRetryDelay      = attribute.Key("ferry.retry.delay_ms")
	AttrDeadLetterTopic = attribute.Key("ferry.dead_letter.topic")
	AttrDeadLettered    = attribute.Key("ferry.dead_lettered") // bool, on the process span
	AttrDuplicate       = attribute.Key("ferry.duplicate")     // bool, on the process span
	AttrDedupeKey       = attribute.Key("ferry.dedupe.key")
)

var _ message.Observer = (*Telemetry)(nil)

// Observe implements message.Observer: give t to the adapters'
// WithObserver and the retry and dedupe middleware's WithObserver. It
// counts retries (ferry.retries), dead-lettered copies
// (ferry.dead_lettered), skipped duplicates (ferry.duplicates_skipped),
// failed commits (ferry.commit.failures) and connection losses
// (ferry.connection.losses); keeps the lag of each partition or queue for
// the ferry.consumer.lag gauge; and marks the span in ctx: an event per
// retry, the dead-lettering (event, attribute and error status) and a
// skipped duplicate (event and attribute). Publish and handler events are
// not counted here: Publisher and Middleware measure those.
func (t *Telemetry) Observe(ctx context.Context, ev message.Event) {
	if ctx == nil {
		ctx = context.Background()
	}
	switch ev.Kind {
	case message.EventRetry:
		t.count(ctx, t.retries, &ev)
		if span := t.span(ctx); span != nil {
			attrs := []attribute.KeyValue{AttrAttempt.Int(ev.Attempt), AttrRetryDelay.Int64(ev.Delay.Milliseconds())}
			if ev.Err != nil {
				attrs = append(attrs, semconv.ExceptionMessage(ev.Err.Error()), semconv.ErrorType(ev.Err))
			}
			span.AddEvent(EventRetry, trace.WithAttributes(attrs...))
		}
	case message.EventDeadLettered:
		if ev.PublishErr == nil {
			t.count(ctx, t.deadLettered, &ev)
		}
		if span := t.span(ctx); span != nil {
			attrs := []attribute.KeyValue{AttrDeadLetterTopic.String(ev.DeadLetterTopic), AttrAttempt.Int(ev.Attempt)}
			if ev.Err != nil {
				attrs = append(attrs, semconv.ExceptionMessage(ev.Err.Error()), semconv.ErrorType(ev.Err))
			}
			if ev.PublishErr != nil {
				attrs = append(attrs, attribute.String("ferry.dead_letter.publish_error", ev.PublishErr.Error()))
			}
			span.AddEvent(EventDeadLettered, trace.WithAttributes(attrs...))
			if ev.PublishErr == nil {
				span.SetAttributes(AttrDeadLettered.Bool(true), AttrDeadLetterTopic.String(ev.DeadLetterTopic))
				desc := "dead-lettered to " + ev.DeadLetterTopic
				if ev.Err != nil {
					desc += ": " + ev.Err.Error()
				}
				span.SetStatus(codes.Error, desc)
			}
		}
	case message.EventDuplicateSkipped:
		t.count(ctx, t.duplicates, &ev)
		if span := t.span(ctx); span != nil {
			span.AddEvent(EventDuplicateSkipped, trace.WithAttributes(AttrDedupeKey.String(ev.DedupeKey)))
			span.SetAttributes(AttrDuplicate.Bool(true))
		}
	case message.EventCommitFailed:
		t.count(ctx, t.commitFails, &ev)
	case message.EventConnectionLost:
		if t.metrics {
			t.connLosses.Add(ctx, 1, metric.WithAttributes(semconv.MessagingSystemKey.String(ev.System)))
		}
	case message.EventLag:
		t.setLag(ev)
	}
}

// span returns the recording span of ctx, or nil.
func (t *Telemetry) span(ctx context.Context) trace.Span {
	if !t.tracing {
		return nil
	}
	if s := trace.SpanFromContext(ctx); s.IsRecording() {
		return s
	}
	return nil
}

func (t *Telemetry) count(ctx context.Context, c metric.Int64Counter, ev *message.Event) {
	if !t.metrics {
		return
	}
	c.Add(ctx, 1, metric.WithAttributeSet(t.dest(ev.System, ev.Topic, ev.Group).consume))
}

// lagKey names one partition (or queue) of one group.
type lagKey struct {
	system, topic, group string
	partition            int32
}

func (t *Telemetry) setLag(ev message.Event) {
	k := lagKey{ev.System, ev.Topic, ev.Group, ev.Partition}
	t.lagMu.Lock()
	if ev.Lag < 0 {
		delete(t.lag, k)
	} else {
		t.lag[k] = ev.Lag
	}
	t.lagMu.Unlock()
}

// Lag returns the last lag observed for a partition (or queue: -1 for
// RabbitMQ's competing mode queue) of group on topic, and whether one was
// observed. It is what the ferry.consumer.lag gauge reports.
func (t *Telemetry) Lag(system, topic, group string, partition int32) (int64, bool) {
	t.lagMu.Lock()
	defer t.lagMu.Unlock()
	v, ok := t.lag[lagKey{system, topic, group, partition}]
	return v, ok
}

func (t *Telemetry) observeLag(_ context.Context, o metric.Observer) error {
	t.lagMu.Lock()
	defer t.lagMu.Unlock()
	for k, v := range t.lag {
		attrs := []attribute.KeyValue{
			semconv.MessagingSystemKey.String(k.system),
			semconv.MessagingDestinationName(k.topic),
			semconv.MessagingConsumerGroupName(k.group),
		}
		if k.partition >= 0 {
			attrs = append(attrs, partitionID(k.partition))
		}
		o.ObserveInt64(t.lagGauge, v, metric.WithAttributes(attrs...))
	}
	return nil
}

// String names the instrumentation, for logs.
func (t *Telemetry) String() string {
	return fmt.Sprintf("otelferry.Telemetry(tracing=%t, metrics=%t)", t.tracing, t.metrics)
}
