package otelferry

import (
	"fmt"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// ScopeName is the instrumentation scope of ferry's tracer and meter.
const ScopeName = "github.com/ferrymsg/ferry/otelferry"

// SchemaURL is the OpenTelemetry semantic conventions version followed.
const SchemaURL = semconv.SchemaURL

// Metric names of ferry's own instruments (besides the convention's
// messaging.client.sent.messages, messaging.client.consumed.messages,
// messaging.client.operation.duration and messaging.process.duration).
const (
	MetricRetries          = "ferry.retries"            // retry middleware: attempts to be retried
	MetricRedeliveries     = "ferry.redeliveries"       // deliveries with Attempt > 1 (middleware)
	MetricDeadLettered     = "ferry.dead_lettered"      // copies published to a dead-letter topic
	MetricDuplicates       = "ferry.duplicates_skipped" // dedupe middleware: skipped duplicates
	MetricPublishFailures  = "ferry.publish.failures"   // messages a Publish call failed to send
	MetricCommitFailures   = "ferry.commit.failures"    // failed offset commits (Kafka)
	MetricConnectionLosses = "ferry.connection.losses"  // lost connections and failed reconnection attempts
	MetricConsumerLag      = "ferry.consumer.lag"       // observable gauge: messages not yet consumed
)

// Telemetry is ferry's OpenTelemetry instrumentation: a publisher wrapper
// (Publisher), a handler middleware (Middleware) and a message.Observer
// (Observe) for the events of adapters and middleware. Create it with New;
// it is safe for concurrent use.
type Telemetry struct {
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	tracing bool // false with the no-op tracer provider
	metrics bool // false with the no-op meter provider
	parent  bool // WithParentContext

	sent, consumed                       metric.Int64Counter
	opDuration, procDuration             metric.Float64Histogram
	retries, redeliveries, deadLettered  metric.Int64Counter
	duplicates, pubFailures, commitFails metric.Int64Counter
	connLosses                           metric.Int64Counter
	lagGauge                             metric.Int64ObservableGauge
	lagMu                                sync.Mutex
	lag                                  map[lagKey]int64
	dests                                sync.Map // destKey -> *dest
}

// Option configures New.
type Option func(*config) error

type config struct {
	tp     trace.TracerProvider
	mp     metric.MeterProvider
	prop   propagation.TextMapPropagator
	parent bool
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("otelferry: %w: "+format, append([]any{message.ErrInvalidConfig}, args...)...)
}

// WithTracerProvider sets the tracer provider. Default: the global one
// (otel.GetTracerProvider()) at New. With trace/noop's provider no span is
// started and no header is written.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if isnil.Is(tp) {
			return invalid("WithTracerProvider: provider is nil")
		}
		c.tp = tp
		return nil
	}
}

// WithMeterProvider sets the meter provider. Default: the global one
// (otel.GetMeterProvider()) at New. With metric/noop's provider nothing is
// measured.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if isnil.Is(mp) {
			return invalid("WithMeterProvider: provider is nil")
		}
		c.mp = mp
		return nil
	}
}

// WithPropagator sets how trace context travels in message headers.
// Default: the global propagator (otel.GetTextMapPropagator()) if one is
// set, else W3C Trace Context and Baggage (traceparent, tracestate,
// baggage), which every OpenTelemetry SDK and agent reads.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) error {
		if isnil.Is(p) {
			return invalid("WithPropagator: propagator is nil")
		}
		c.prop = p
		return nil
	}
}

// WithParentContext makes the producer's context the parent of the
// consumer's process span, so producer and consumer share one trace id,
// instead of a link to it (the conventions' default, which Middleware
// follows without this option: a process span is then the root of a trace
// of its own, linked to the producer's). Default: off (link).
func WithParentContext() Option {
	return func(c *config) error { c.parent = true; return nil }
}

// New returns the instrumentation configured by opts. A bad option fails
// with an error wrapping message.ErrInvalidConfig; nil options are
// skipped.
func New(opts ...Option) (*Telemetry, error) {
	c := config{}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = otel.GetTextMapPropagator()
		if len(c.prop.Fields()) == 0 {
			c.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
		}
	}
	t := &Telemetry{prop: c.prop, parent: c.parent, lag: map[lagKey]int64{}}
	_, noTrace := c.tp.(tracenoop.TracerProvider)
	_, noMetric := c.mp.(metricnoop.MeterProvider)
	t.tracing, t.metrics = !noTrace, !noMetric
	t.tracer = c.tp.Tracer(ScopeName, trace.WithSchemaURL(SchemaURL))
	if err := t.instruments(c.mp.Meter(ScopeName, metric.WithSchemaURL(SchemaURL))); err != nil {
		return nil, fmt.Errorf("otelferry: create instruments: %w", err)
	}
	return t, nil
}

// durationBuckets are the conventions' advised bucket boundaries (seconds)
// for messaging durations.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

func (t *Telemetry) instruments(m metric.Meter) error {
	var err error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, e := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = e
		}
		return c
	}
	hist := func(name, desc string) metric.Float64Histogram {
		h, e := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		if e != nil && err == nil {
			err = e
		}
		return h
	}
	t.sent = counter("messaging.client.sent.messages", "{message}", "Number of messages producer attempted to send to the broker.")
	t.consumed = counter("messaging.client.consumed.messages", "{message}", "Number of messages that were delivered to the application.")
	t.opDuration = hist("messaging.client.operation.duration", "Duration of messaging operation initiated by a producer or consumer client.")
	t.procDuration = hist("messaging.process.duration", "Duration of processing operation.")
	t.retries = counter(MetricRetries, "{message}", "Failed handler attempts the retry middleware retries.")
	t.redeliveries = counter(MetricRedeliveries, "{message}", "Deliveries of a message after its first (handler error, broker redelivery).")
	t.deadLettered = counter(MetricDeadLettered, "{message}", "Messages published to a dead-letter topic.")
	t.duplicates = counter(MetricDuplicates, "{message}", "Messages the dedupe middleware skipped as already processed.")
	t.pubFailures = counter(MetricPublishFailures, "{message}", "Messages a Publish call failed to send.")
	t.commitFails = counter(MetricCommitFailures, "{commit}", "Failed commits of consumed positions.")
	t.connLosses = counter(MetricConnectionLosses, "{event}", "Lost broker connections and failed reconnection attempts.")
	if err != nil {
		return err
	}
	g, err := m.Int64ObservableGauge(MetricConsumerLag, metric.WithUnit("{message}"),
		metric.WithDescription("Messages of a partition or queue not yet consumed and settled by the group."))
	if err != nil {
		return err
	}
	t.lagGauge = g
	_, err = m.RegisterCallback(t.observeLag, g)
	return err
}

// destKey and dest cache what is the same for every message of one
// destination: span names and attribute sets.
type destKey struct{ system, topic, group string }

type dest struct {
	process, send, create string               // span names
	consume               attribute.Set        // metric attributes of process
	publish               attribute.Set        // metric attributes of send
	base                  []attribute.KeyValue // span attributes of process
}

func (t *Telemetry) dest(system, topic, group string) *dest {
	k := destKey{system, topic, group}
	if d, ok := t.dests.Load(k); ok {
		return d.(*dest)
	}
	d := &dest{process: "process " + topic, send: "send " + topic, create: "create " + topic}
	kv := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(system),
		semconv.MessagingDestinationName(topic),
	}
	pub := append(kv[:2:2], semconv.MessagingOperationName("send"), semconv.MessagingOperationTypeSend)
	d.publish = attribute.NewSet(pub...)
	con := append(kv[:2:2], semconv.MessagingOperationName("process"), semconv.MessagingOperationTypeProcess)
	if group != "" {
		con = append(con, semconv.MessagingConsumerGroupName(group))
	}
	d.consume = attribute.NewSet(con...)
	d.base = con
	v, _ := t.dests.LoadOrStore(k, d)
	return v.(*dest)
}

func partitionID(p int32) attribute.KeyValue {
	return semconv.MessagingDestinationPartitionID(strconv.Itoa(int(p)))
}
