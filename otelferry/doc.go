// Package otelferry is ferry's OpenTelemetry instrumentation: traces across
// the broker, metrics with the conventions' names and units, consumer lag,
// and trace IDs in logs. It imports only the OpenTelemetry API
// (go.opentelemetry.io/otel, /trace, /metric, /propagation, /semconv);
// the SDK and the exporters are the application's choice. Package message
// and the adapters do not import OpenTelemetry: they report through
// message.Observer, which Telemetry implements.
//
// # Convention version
//
// Spans, attributes and metrics follow the OpenTelemetry semantic
// conventions for messaging, version 1.43.0 (SchemaURL; status
// "development": names may still change, and this package will follow
// them in a later release, without an OTEL_SEMCONV_STABILITY_OPT_IN
// switch, since it never emitted the older names).
//
// # Wiring
//
//	tel, err := otelferry.New() // the global providers; or WithTracerProvider, WithMeterProvider
//	pub, err := tel.Publisher(kafkaPub)                   // send spans, trace context in headers
//	sub, err := kafka.NewSubscriber(brokers, kafka.WithGroup("billing"),
//		kafka.WithObserver(tel))                          // lag, commit failures (and the same on the publisher)
//	policy, err := retry.New(retry.WithDeadLetter(pub), retry.WithObserver(tel))
//	h := message.Chain(handle, tel.Middleware(), policy)  // Middleware first: the outermost
//
// An OTLP exporter in five lines (go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc
// and the SDK, in the application):
//
//	exp, err := otlptracegrpc.New(ctx) // OTEL_EXPORTER_OTLP_ENDPOINT, default localhost:4317
//	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
//	defer tp.Shutdown(ctx)
//	otel.SetTracerProvider(tp)
//	tel, err := otelferry.New() // or otelferry.New(otelferry.WithTracerProvider(tp))
//
// # What is traced
//
// Publisher.Publish: a "send <topic>" span (kind PRODUCER) per call, in
// the caller's trace. Each message gets the trace context in its headers
// through the propagator (W3C traceparent and tracestate, and baggage, by
// default): for one message the send span's; for a batch a "create
// <topic>" span (PRODUCER) per message, which the send span links to. A
// message that already carries a trace context keeps it and the send span
// links to it: a dead-lettered copy (the retry middleware copies the
// headers), a replayed message (retry.Replay) and a forwarded one keep
// pointing at where the message was created.
//
// Middleware: a "process <topic>" span (kind CONSUMER) per handler call,
// that is per attempt (ferry.message.attempt), started when the handler
// is called, so a message that the adapter only prefetched has no span.
// It is linked to the producer's context read from the headers (from
// ferry or any OpenTelemetry-instrumented producer, such as a Java
// service with the agent), as the conventions advise; with
// WithParentContext the producer's context is its parent instead, so
// producer and consumer share one trace. The producer's baggage is in the
// handler's context. A handler error (or panic) sets the span's status to
// Error, records an exception event and sets error.type.
//
// BatchMiddleware, for batch handlers (message.BatchSubscriber): one
// "process <topic>" span per batch handler call, linked to the producer's
// context of every message of the batch, with messaging.batch.message_count
// and, when the batch failed, the error status and ferry.batch.failed (how
// many of its messages failed).
//
// Retry, dead-letter and dedupe show in the process span through Observe
// (give Telemetry to retry.WithObserver and dedupe.WithObserver): a
// "ferry.retry" event per failed attempt to be retried (attempt, delay,
// error), a "ferry.dead_lettered" event, the attributes
// ferry.dead_lettered and ferry.dead_letter.topic and the Error status
// when the message went to the dead-letter topic, a
// "ferry.duplicate_skipped" event and ferry.duplicate=true for a skipped
// duplicate. The dead-letter publish itself, through a wrapped publisher,
// is a send span in the failing attempt's trace, linked to the original.
//
// Span attributes: messaging.system ("kafka", "rabbitmq", "inmem" for the
// in-memory broker), messaging.operation.name and messaging.operation.type
// ("send", "create", "process"), messaging.destination.name (the topic),
// messaging.consumer.group.name, messaging.message.id,
// messaging.batch.message_count (send spans of more than one message),
// messaging.destination.partition.id (Kafka and inmem),
// messaging.kafka.message.key and messaging.kafka.offset (Kafka),
// messaging.rabbitmq.destination.routing_key and
// messaging.rabbitmq.message.delivery_tag (RabbitMQ), error.type on
// failure, and ferry.message.attempt. They come from message.Delivery,
// which every adapter fills in (System, Topic, Group, Partition, Offset,
// RoutingKey, DeliveryTag, Attempt).
//
// # Metrics
//
// The conventions' instruments: messaging.client.sent.messages
// ({message}, per send, with error.type for the failed ones) and
// messaging.client.operation.duration (s, per Publish call) from
// Publisher; messaging.client.consumed.messages ({message}, per handler
// call) and messaging.process.duration (s, with error.type on failure)
// from Middleware. Attributes: messaging.system,
// messaging.destination.name, messaging.operation.name and .type,
// messaging.consumer.group.name on the consumer side.
//
// ferry's own, with the same attributes: ferry.retries (attempts the retry
// middleware retries), ferry.redeliveries (deliveries with an attempt
// above 1, from the middleware), ferry.dead_lettered (copies published to
// a dead-letter topic), ferry.duplicates_skipped, ferry.publish.failures
// (messages a Publish call failed to send), ferry.commit.failures (Kafka),
// ferry.connection.losses (lost connections and failed reconnection
// attempts or dials), all counters; and
// ferry.consumer.lag, an observable gauge ({message}) per topic, group
// and partition (or queue): on Kafka the partition's high watermark,
// which each fetch response carries, minus the group's commit point, with
// no request made for it; on RabbitMQ the ready messages of each of the
// group's queues, from a passive queue.declare every
// amqp.WithLagInterval (5 s); on inmem appended minus committed. The lag
// comes from the adapters' EventLag (WithObserver); a partition that
// leaves the subscriber leaves the gauge.
//
// With trace/noop's tracer provider and metric/noop's meter provider,
// Middleware returns the handler itself and Publisher passes calls
// through: nothing is recorded and nothing is allocated (see
// BENCHMARKS.md for both costs).
//
// # Logs
//
// LogHandler wraps a slog.Handler so that records logged with a context
// holding a span get trace_id and span_id. The adapters' and middleware's
// WithLogger records about a message (retry, dead-lettered, duplicate
// skipped) are logged with the handler's context and so carry the process
// span's IDs; records about connections and commits have no span.
package otelferry
