package otelferry_test

import (
	"context"
	"fmt"
	"sort"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/otelferry"
)

// A message published through the wrapper and consumed through the
// middleware: a send span (PRODUCER) and a process span (CONSUMER) linked
// to it through the traceparent header.
func Example() {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	tel, err := otelferry.New(otelferry.WithTracerProvider(tp), otelferry.WithMeterProvider(metricnoop.NewMeterProvider()))
	if err != nil {
		panic(err)
	}

	b, _ := inmem.NewBroker()
	defer b.Close()
	raw, _ := inmem.NewPublisher(b)
	pub, _ := tel.Publisher(raw)
	sub, _ := inmem.NewSubscriber(b, inmem.WithGroup("billing"), inmem.WithObserver(tel))

	ctx, cancel := context.WithCancel(context.Background())
	ready, handled, stopped := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		_ = sub.Subscribe(message.WithReady(ctx, func() { close(ready) }), "orders",
			message.Chain(func(context.Context, *message.Message) error { close(handled); return nil }, tel.Middleware()))
	}()
	<-ready
	msg := &message.Message{ID: "order-1", Key: "alice", Payload: []byte(`{"total":42}`)}
	if err := pub.Publish(context.Background(), "orders", msg); err != nil {
		panic(err)
	}
	<-handled
	cancel()
	<-stopped // the process span has ended

	got := spans.GetSpans()
	sort.Slice(got, func(i, j int) bool { return got[i].StartTime.Before(got[j].StartTime) })
	for _, s := range got {
		linked := len(s.Links) == 1 && s.Links[0].SpanContext.SpanID() == got[0].SpanContext.SpanID()
		fmt.Printf("%s (%s), linked to the send span: %v\n", s.Name, s.SpanKind, linked)
	}
	fmt.Println("traceparent:", len(msg.Headers["traceparent"]) == 55)
	// Output:
	// send orders (producer), linked to the send span: false
	// process orders (consumer), linked to the send span: true
	// traceparent: true
}
