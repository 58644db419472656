package main

import (
	"context"
	"fmt"
	"io"
	"sort"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/otelferry"
)

// tracing is the -trace flag: otelferry on the OpenTelemetry SDK, every
// span sampled and kept in memory, and at the end the spans of one order,
// the poison order, printed with the SDK's stdout exporter: its send span,
// a process span per service and attempt (the inventory service's with
// the retry events and the dead-lettering), the dead-letter send and the
// dlt-monitor's process span, each linked to the order's creation. A
// zero tracing (no -trace) changes nothing.
type tracing struct {
	tel   *otelferry.Telemetry
	tp    *sdktrace.TracerProvider
	spans *tracetest.InMemoryExporter
}

func newTracing(on bool) (*tracing, error) {
	if !on {
		return &tracing{}, nil
	}
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	tel, err := otelferry.New(otelferry.WithTracerProvider(tp))
	if err != nil {
		return nil, err
	}
	return &tracing{tel: tel, tp: tp, spans: spans}, nil
}

// publisher wraps p in the traced publisher.
func (tr *tracing) publisher(p message.Publisher) (message.Publisher, error) {
	if tr.tel == nil {
		return p, nil
	}
	return tr.tel.Publisher(p)
}

// middleware is the process span per handler call; nil without -trace
// (message.Chain skips it).
func (tr *tracing) middleware() message.Middleware {
	if tr.tel == nil {
		return nil
	}
	return tr.tel.Middleware()
}

// observer reports retries, dead-lettering and skipped duplicates into
// the process span; without -trace it does nothing.
func (tr *tracing) observer() message.Observer {
	if tr.tel == nil {
		return message.ObserverFunc(func(context.Context, message.Event) {})
	}
	return tr.tel
}

// print writes the spans of message id in start order with the stdout
// exporter.
func (tr *tracing) print(ctx context.Context, out io.Writer, id string) error {
	if tr.tel == nil {
		return nil
	}
	var mine tracetest.SpanStubs
	for _, s := range tr.spans.GetSpans() {
		for _, kv := range s.Attributes {
			if kv.Key == attribute.Key("messaging.message.id") && kv.Value.AsString() == id {
				mine = append(mine, s)
				break
			}
		}
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].StartTime.Before(mine[j].StartTime) })
	fmt.Fprintf(out, "trace: the %d spans of %s (OpenTelemetry stdout exporter):\n", len(mine), id)
	exp, err := stdouttrace.New(stdouttrace.WithWriter(out), stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	if err := exp.ExportSpans(ctx, mine.Snapshots()); err != nil {
		return err
	}
	return tr.tp.Shutdown(ctx)
}
