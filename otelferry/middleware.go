package otelferry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferrymsg/ferry/message"
)

// AttrAttempt is the span attribute with the delivery attempt
// (Delivery.Attempt: 1 on the first delivery); the conventions have no
// broker-neutral one.
const AttrAttempt = attribute.Key("ferry.message.attempt")

// Middleware returns the consumer middleware: one "process <topic>" span
// (CONSUMER) per handler call, that is per attempt, linked to the
// producer's context found in the message headers (its parent with
// WithParentContext), with the attributes listed in the package doc, the
// error status, the exception event and error.type on failure; and the
// metrics messaging.process.duration, messaging.client.consumed.messages
// and ferry.redeliveries. The handler's context carries the span and the
// producer's baggage, so the retry and dedupe middleware's events and the
// handler's own logs land in it. Put it first (outermost) in
// message.Chain. A message only prefetched by the adapter gets no span: the
// middleware runs when the handler is called.
func (t *Telemetry) Middleware() message.Middleware {
	return func(next message.Handler) message.Handler {
		if next == nil {
			return nil
		}
		if !t.tracing && !t.metrics {
			return next // the no-op providers: nothing to record
		}
		return func(ctx context.Context, msg *message.Message) error {
			return t.handle(ctx, msg, next)
		}
	}
}

func (t *Telemetry) handle(ctx context.Context, msg *message.Message, next message.Handler) error {
	if msg == nil {
		return next(ctx, msg)
	}
	d := &msg.Delivery
	dst := t.dest(d.System, d.Topic, d.Group)
	start := time.Now()
	var span trace.Span
	if t.tracing {
		ctx, span = t.startProcess(ctx, msg, dst)
	}
	err := next(ctx, msg)
	if span != nil {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(errorType(err))
		}
		span.End()
	}
	if t.metrics {
		set := metric.WithAttributeSet(dst.consume)
		t.consumed.Add(ctx, 1, set)
		if err != nil {
			t.procDuration.Record(ctx, time.Since(start).Seconds(), set, metric.WithAttributes(errorType(err)))
		} else {
			t.procDuration.Record(ctx, time.Since(start).Seconds(), set)
		}
		if d.Attempt > 1 {
			t.redeliveries.Add(ctx, 1, set)
		}
	}
	return err
}

// startProcess starts the process span of msg.
func (t *Telemetry) startProcess(ctx context.Context, msg *message.Message, dst *dest) (context.Context, trace.Span) {
	d := &msg.Delivery
	var producer trace.SpanContext
	if len(msg.Headers) > 0 {
		pctx := t.prop.Extract(context.Background(), propagationCarrier(msg.Headers))
		producer = trace.SpanContextFromContext(pctx)
		if b := baggage.FromContext(pctx); b.Len() > 0 {
			ctx = baggage.ContextWithBaggage(ctx, b)
		}
	}
	attrs := make([]attribute.KeyValue, 0, len(dst.base)+7)
	attrs = append(attrs, dst.base...)
	if msg.ID != "" {
		attrs = append(attrs, semconv.MessagingMessageID(msg.ID))
	}
	attrs = append(attrs, AttrAttempt.Int(d.Attempt))
	switch d.System {
	case "kafka":
		attrs = append(attrs, partitionID(d.Partition), semconv.MessagingKafkaOffset(int(d.Offset)))
		if msg.Key != "" {
			attrs = append(attrs, semconv.MessagingKafkaMessageKey(msg.Key))
		}
	case "rabbitmq":
		attrs = append(attrs, semconv.MessagingRabbitMQDestinationRoutingKey(d.RoutingKey),
			semconv.MessagingRabbitMQMessageDeliveryTag(int(d.DeliveryTag)))
	default:
		if d.Partition >= 0 {
			attrs = append(attrs, partitionID(d.Partition))
		}
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
	if producer.IsValid() {
		if t.parent {
			ctx = trace.ContextWithRemoteSpanContext(ctx, producer)
		} else {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: producer}))
		}
	}
	return t.tracer.Start(ctx, dst.process, opts...)
}

// errorType is error.type of a handler error: that of the cause for a
// message.RedeliverAfterError (the retry middleware's way of asking for
// the next attempt).
func errorType(err error) attribute.KeyValue {
	var ra *message.RedeliverAfterError
	if errors.As(err, &ra) && ra.Err != nil {
		err = ra.Err
	}
	return semconv.ErrorType(err)
}

// propagationCarrier reads and writes message headers for a propagator.
type propagationCarrier map[string]string

func (c propagationCarrier) Get(key string) string { return c[key] }
func (c propagationCarrier) Set(key, value string) { c[key] = value }
func (c propagationCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
