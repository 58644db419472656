package otelferry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// Publisher is a message.Publisher that traces and measures the Publish
// calls of the publisher it wraps (Telemetry.Publisher).
type Publisher struct {
	t      *Telemetry
	next   message.Publisher
	system string
}

var _ message.Publisher = (*Publisher)(nil)

// Publisher wraps p: each Publish call gets a "send <topic>" span
// (PRODUCER) in the caller's trace, and each message the trace context in
// its headers, written by the propagator (traceparent, tracestate,
// baggage): the send span's for a single message, for a batch a "create
// <topic>" span's per message (PRODUCER, in the caller's trace), which the
// send span links to. A message that carries a trace context already (a
// forwarded, dead-lettered or replayed copy, or one from another
// instrumented producer) keeps it, and the send span links to it, so
// consumers link back to where the message was created. Publish fills in
// an empty ID before (message.NewID), as the adapters do, to name it in
// the span. It records messaging.client.sent.messages,
// messaging.client.operation.duration and ferry.publish.failures.
//
// The messaging.system attribute comes from p's MessagingSystem method
// (every ferry adapter's Publisher has one), "unknown" without it. A nil p
// is an error wrapping message.ErrInvalidConfig.
func (t *Telemetry) Publisher(p message.Publisher) (*Publisher, error) {
	if isnil.Is(p) {
		return nil, invalid("Publisher: publisher is nil")
	}
	sys := "unknown"
	if s, ok := p.(interface{ MessagingSystem() string }); ok {
		sys = s.MessagingSystem()
	}
	return &Publisher{t: t, next: p, system: sys}, nil
}

// ContentTypeHeader passes on the wrapped publisher's content type header
// (its ContentTypeHeader method; AMQP: the content-type property), so
// typed publishers of package codec wrapped around p put the content type
// where the broker's consumers read it; "" when the wrapped publisher has
// none (codec then uses its default header).
func (p *Publisher) ContentTypeHeader() string {
	if h, ok := p.next.(interface{ ContentTypeHeader() string }); ok {
		return h.ContentTypeHeader()
	}
	return ""
}

// Publish publishes msgs through the wrapped publisher, traced and
// measured.
func (p *Publisher) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	t := p.t
	if !t.tracing && !t.metrics {
		return p.next.Publish(ctx, topic, msgs...)
	}
	if ctx == nil {
		return p.next.Publish(ctx, topic, msgs...) // the adapter reports it
	}
	dst := t.dest(p.system, topic, "")
	start := time.Now()
	var span trace.Span
	if t.tracing {
		ctx, span = p.startSend(ctx, topic, dst, msgs)
	}
	err := p.next.Publish(ctx, topic, msgs...)
	failed := 0
	if err != nil {
		failed = len(msgs)
		var pe *message.PublishError
		if errors.As(err, &pe) {
			failed = len(pe.Failed)
		}
	}
	if span != nil {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(semconv.ErrorType(err))
		}
		span.End()
	}
	if t.metrics {
		set := metric.WithAttributeSet(dst.publish)
		if ok := len(msgs) - failed; ok > 0 {
			t.sent.Add(ctx, int64(ok), set)
		}
		if err != nil {
			et := metric.WithAttributes(semconv.ErrorType(err))
			if failed > 0 {
				t.sent.Add(ctx, int64(failed), set, et)
				t.pubFailures.Add(ctx, int64(failed), set)
			}
			t.opDuration.Record(ctx, time.Since(start).Seconds(), set, et)
		} else {
			t.opDuration.Record(ctx, time.Since(start).Seconds(), set)
		}
	}
	return err
}

// startSend starts the send span and writes the trace context into the
// messages' headers.
func (p *Publisher) startSend(ctx context.Context, topic string, dst *dest, msgs []*message.Message) (context.Context, trace.Span) {
	t := p.t
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(p.system),
		semconv.MessagingDestinationName(topic),
		semconv.MessagingOperationName("send"),
		semconv.MessagingOperationTypeSend,
	}
	if len(msgs) != 1 {
		attrs = append(attrs, semconv.MessagingBatchMessageCount(len(msgs)))
	} else if m := msgs[0]; m != nil {
		if m.ID == "" {
			m.ID = message.NewID()
		}
		attrs = append(attrs, semconv.MessagingMessageID(m.ID))
		if m.Key != "" && p.system == "kafka" {
			attrs = append(attrs, semconv.MessagingKafkaMessageKey(m.Key))
		}
	}
	var links []trace.Link
	var fresh []*message.Message // messages without a trace context
	for _, m := range msgs {
		if m == nil {
			continue
		}
		if sc := t.carried(m); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
			continue
		}
		fresh = append(fresh, m)
	}
	if len(msgs) > 1 {
		// A batch: one create span per message, its context in the
		// message, linked from the send span.
		for _, m := range fresh {
			if m.ID == "" {
				m.ID = message.NewID()
			}
			cctx, cs := t.tracer.Start(ctx, dst.create, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
				semconv.MessagingSystemKey.String(p.system),
				semconv.MessagingDestinationName(topic),
				semconv.MessagingOperationName("create"),
				semconv.MessagingOperationTypeCreate,
				semconv.MessagingMessageID(m.ID),
			))
			t.inject(cctx, m)
			links = append(links, trace.Link{SpanContext: cs.SpanContext()})
			cs.End()
		}
		fresh = nil
	}
	ctx, span := t.tracer.Start(ctx, dst.send, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attrs...), trace.WithLinks(links...))
	for _, m := range fresh {
		t.inject(ctx, m)
	}
	return ctx, span
}

// carried returns the trace context m carries in its headers, if any.
func (t *Telemetry) carried(m *message.Message) trace.SpanContext {
	if len(m.Headers) == 0 {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(t.prop.Extract(context.Background(), propagationCarrier(m.Headers)))
}

func (t *Telemetry) inject(ctx context.Context, m *message.Message) {
	if m.Headers == nil {
		m.Headers = make(map[string]string, 2)
	}
	t.prop.Inject(ctx, propagationCarrier(m.Headers))
}

// Close closes the wrapped publisher.
func (p *Publisher) Close() error { return p.next.Close() }

// MessagingSystem returns the wrapped publisher's messaging.system.
func (p *Publisher) MessagingSystem() string { return p.system }

// String names the wrapper and what it wraps, for logs.
func (p *Publisher) String() string { return fmt.Sprintf("otelferry.Publisher(%s)", p.system) }
