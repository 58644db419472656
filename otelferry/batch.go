package otelferry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/ferrymsg/ferry/message"
)

// BatchMiddleware is Middleware for batch handlers
// (message.BatchSubscriber): one "process <topic>" span (CONSUMER) per
// batch handler call, linked to the producer's context of every message
// of the batch (the conventions' way for batches: a batch has no single
// parent, so WithParentContext does not apply), with
// messaging.batch.message_count, the first message's destination
// attributes, the error status, the exception event and error.type when
// the batch failed (a *message.BatchError included: the span says how
// many failed, in the ferry.batch.failed attribute). Metrics per message:
// messaging.client.consumed.messages and ferry.redeliveries per message,
// messaging.process.duration once per batch. Put it first (outermost) in
// message.ChainBatch.
func (t *Telemetry) BatchMiddleware() message.BatchMiddleware {
	return func(next message.BatchHandler) message.BatchHandler {
		if next == nil {
			return nil
		}
		if !t.tracing && !t.metrics {
			return next
		}
		return func(ctx context.Context, msgs []*message.Message) error {
			return t.handleBatch(ctx, msgs, next)
		}
	}
}

// AttrBatchFailed is the span attribute with the number of messages of a
// batch that failed.
const AttrBatchFailed = attribute.Key("ferry.batch.failed")

func (t *Telemetry) handleBatch(ctx context.Context, msgs []*message.Message, next message.BatchHandler) error {
	var first *message.Message
	for _, m := range msgs {
		if m != nil {
			first = m
			break
		}
	}
	if first == nil {
		return next(ctx, msgs)
	}
	d := &first.Delivery
	dst := t.dest(d.System, d.Topic, d.Group)
	start := time.Now()
	var span trace.Span
	if t.tracing {
		links := make([]trace.Link, 0, len(msgs))
		for _, m := range msgs {
			if m == nil || len(m.Headers) == 0 {
				continue
			}
			pctx := t.prop.Extract(context.Background(), propagationCarrier(m.Headers))
			if sc := trace.SpanContextFromContext(pctx); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc})
			}
		}
		attrs := append(append(make([]attribute.KeyValue, 0, len(dst.base)+1), dst.base...), semconv.MessagingBatchMessageCount(len(msgs)))
		ctx, span = t.tracer.Start(ctx, dst.process, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attrs...), trace.WithLinks(links...))
	}
	err := next(ctx, msgs)
	if span != nil {
		if err != nil {
			failed := len(msgs)
			if errs := message.BatchResults(err, len(msgs)); errs != nil {
				failed = 0
				for _, e := range errs {
					if e != nil {
						failed++
					}
				}
			}
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(errorType(err), AttrBatchFailed.Int(failed))
		}
		span.End()
	}
	if t.metrics {
		set := metric.WithAttributeSet(dst.consume)
		t.consumed.Add(ctx, int64(len(msgs)), set)
		if err != nil {
			t.procDuration.Record(ctx, time.Since(start).Seconds(), set, metric.WithAttributes(errorType(err)))
		} else {
			t.procDuration.Record(ctx, time.Since(start).Seconds(), set)
		}
		var redelivered int64
		for _, m := range msgs {
			if m != nil && m.Delivery.Attempt > 1 {
				redelivered++
			}
		}
		if redelivered > 0 {
			t.redeliveries.Add(ctx, redelivered, set)
		}
	}
	return err
}
