package otelferry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/otelferry"
)

// The middleware's cost per message, against the bare handler measured in
// the same run:
//
//	go test -run '^$' -bench 'Middleware|Publisher' -benchmem -count 5 ./otelferry/
//
// noop: trace/noop and metric/noop providers (≤ 20 ns, 0 allocs: the
// middleware is the handler itself); global: the global providers with no
// SDK installed; sdk: the SDK with AlwaysSample, a batch span processor
// on a no-op exporter, and a meter provider with a manual reader.
func BenchmarkMiddleware(b *testing.B) {
	msg := &message.Message{ID: "01J0000000000000000000000", Key: "customer-1", Payload: []byte("{}"),
		Headers:  map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		Delivery: message.Delivery{System: "kafka", Topic: "orders", Group: "billing", Attempt: 1, Partition: 3, Offset: 42}}
	handler := func(context.Context, *message.Message) error { return nil }
	run := func(b *testing.B, h message.Handler) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if err := h(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, handler) })
	b.Run("noop", func(b *testing.B) {
		tel, err := otelferry.New(otelferry.WithTracerProvider(tracenoop.NewTracerProvider()),
			otelferry.WithMeterProvider(metricnoop.NewMeterProvider()))
		if err != nil {
			b.Fatal(err)
		}
		run(b, tel.Middleware()(handler))
	})
	b.Run("global", func(b *testing.B) {
		tel, err := otelferry.New(otelferry.WithTracerProvider(otel.GetTracerProvider()),
			otelferry.WithMeterProvider(otel.GetMeterProvider()))
		if err != nil {
			b.Fatal(err)
		}
		run(b, tel.Middleware()(handler))
	})
	b.Run("sdk", func(b *testing.B) {
		tel := sdkTelemetry(b)
		run(b, tel.Middleware()(handler))
	})
}

// BenchmarkPublisher: the publisher wrapper's cost per one-message Publish
// call over a publisher that does nothing.
func BenchmarkPublisher(b *testing.B) {
	run := func(b *testing.B, p message.Publisher) {
		ctx := context.Background()
		msg := &message.Message{ID: "01J0000000000000000000000", Key: "customer-1", Payload: []byte("{}")}
		b.ReportAllocs()
		for b.Loop() {
			clear(msg.Headers)
			if err := p.Publish(ctx, "orders", msg); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, nopPublisher{}) })
	b.Run("noop", func(b *testing.B) {
		tel, err := otelferry.New(otelferry.WithTracerProvider(tracenoop.NewTracerProvider()),
			otelferry.WithMeterProvider(metricnoop.NewMeterProvider()))
		if err != nil {
			b.Fatal(err)
		}
		p, err := tel.Publisher(nopPublisher{})
		if err != nil {
			b.Fatal(err)
		}
		run(b, p)
	})
	b.Run("sdk", func(b *testing.B) {
		p, err := sdkTelemetry(b).Publisher(nopPublisher{})
		if err != nil {
			b.Fatal(err)
		}
		run(b, p)
	})
}

func sdkTelemetry(b *testing.B) *otelferry.Telemetry {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	tel, err := otelferry.New(otelferry.WithTracerProvider(tp), otelferry.WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	return tel
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, ...*message.Message) error { return nil }
func (nopPublisher) Close() error                                               { return nil }
func (nopPublisher) MessagingSystem() string                                    { return "kafka" }
