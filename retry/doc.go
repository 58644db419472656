// Package retry is ferry's error policy for consumers: one middleware that
// retries a failing handler with backoff and then parks the message on a
// dead-letter topic (DLT) with the error attached, like Spring Kafka's
// DefaultErrorHandler with a DeadLetterPublishingRecoverer. Retrying and
// dead-lettering live in one middleware, so their order cannot be got
// wrong. It works the same on every adapter.
//
//	mw, err := retry.New(
//		retry.WithMaxAttempts(5),
//		retry.WithExponentialBackoff(100*time.Millisecond, 5*time.Second),
//		retry.WithDeadLetter(pub), // parks exhausted messages on <topic>.DLT
//	)
//	err = sub.Subscribe(ctx, "orders", message.Chain(handle, mw))
//
// Replay moves dead-lettered messages back to their original topic once
// the cause is fixed; ParseDeadLetter reads the dead-letter headers.
//
// # Delivery semantics
//
// Retries happen in process, without holding a worker: after a failure
// the middleware returns at once with a message.RedeliverAfter error
// carrying the backoff, and the subscriber's dispatcher delivers the same
// message again after that delay (with Delivery.Attempt one higher),
// exactly as it redelivers after any handler error, only with the
// middleware's delay instead of its own backoff. Meanwhile the message
// keeps its key: later messages of the key wait behind it, in order, as
// with Spring's blocking retries; but no worker waits, so at any
// concurrency, 1 included, every other key keeps flowing. Every adapter
// does it the same way (inmem, kafka, its share-group mode, amqp, and any
// adapter on the adapter/dispatch kit). The wait holds the message in
// memory and, on Kafka, the partition's commit point; for waits of
// minutes take a delayed retry tier instead. Between its deliveries
// the middleware remembers each failing message's first failure and its
// backoff policy in memory (bounded to 4096 messages; a forgotten one
// starts its backoff again and its elapsed time from its next failure).
// A handler error that carries its own delay (message.RedeliverAfter, for
// a downstream's Retry-After) is retried after that delay instead of the
// backoff's, within the same limits. A panic in the handler counts as a
// failure (adapter.Call). The message then ends in exactly one of these
// ways:
//
//   - an attempt succeeds: nil is returned and the message is settled;
//   - the attempts are exhausted, or the error is permanent (Permanent,
//     backoff.Permanent or WithNotRetryable): with WithDeadLetter, a copy is
//     published to the dead-letter topic and, once the broker has accepted
//     it, nil is returned so the original is settled. Without WithDeadLetter
//     the last handler error is returned and the subscriber redelivers the
//     message (after its own redelivery backoff): nothing is dropped;
//   - the dead-letter publish fails: an error is returned and the original
//     is redelivered, never lost. The middleware remembers (in memory,
//     bounded to 4096 messages) that the message was exhausted, so the
//     redelivery only retries the dead-letter publish, without calling the
//     handler again; a process restart forgets this, and the redelivery is
//     then handled as the attempt counting below says;
//   - the handler's context ends (the subscriber gave up waiting during
//     shutdown): the handler's error is returned, so the message is
//     redelivered later, not dead-lettered; a message waiting between
//     attempts when the subscriber stops is left unsettled and the broker
//     delivers it again (counting as the attempts below say);
//   - WithRedeliver's classifier matches the error ("not now", such as
//     dedupe.ErrInProgress): the error is returned at once for
//     redelivery, without retry or dead-lettering.
//
// # Attempt counting
//
// An attempt is one handler call, and each attempt is one delivery: the
// subscriber redelivers the message for each retry, with
// Delivery.Attempt one higher. A message gets WithMaxAttempts attempts
// in total (default 3), the first included, and earlier deliveries count:
// delivery number A is attempt A, or one more than the attempts this
// process already saw fail for the message when that is higher, so a
// message first delivered as number A gets at most
// max(WithMaxAttempts-(A-1), 1) handler calls. The middleware cannot know
// what an earlier process did before it crashed, so each earlier delivery
// counts as exactly one used attempt: a message redelivered after a crash
// gets a reduced budget, never a fresh full one (on brokers that report
// the redelivery: AMQP's redelivered flag or a quorum queue's
// x-delivery-count, and in-process redeliveries raise Delivery.Attempt; a
// Kafka restart delivers with Attempt 1 again). On AMQP, a message that
// waited between attempts when the connection was lost comes back from
// the broker marked redelivered (Attempt 2); the middleware still knows
// its failures by message ID, so its count goes on from there instead of
// starting again. A delivery past the budget still gets one handler call
// (so that a fixed downstream lets it through) and is dead-lettered at
// once if it fails. Attempt numbers in RetryEvent and HeaderAttempts
// follow the same count. WithMaxElapsedTime (default none) ends the
// attempts when the next one would start later than that after the first
// failure seen by this process; the first limit reached wins.
//
// # Delayed retry tiers
//
// In-process retries keep a failing message where it is: it blocks its
// key (later messages of the key wait, in order) and, on Kafka, the
// partition's commit point, for as long as the backoff runs. That is
// right for failures that heal in milliseconds or seconds. For failures
// that take minutes (a downstream is down), WithDelayedRetry lets the
// message leave its topic, wait outside it, and come back, as Spring
// Kafka's @RetryableTopic (non-blocking retries) and RabbitMQ's TTL +
// dead-letter-exchange wait queues do:
//
//	p, err := retry.NewPolicy(
//		retry.WithMaxAttempts(3), // in process, on the topic
//		retry.WithDelayedRetry(pub, 10*time.Second, time.Minute, 10*time.Minute),
//		retry.WithDeadLetter(pub), // after the last tier (default: pub of WithDelayedRetry)
//	)
//	err = p.Subscribe(ctx, sub, "orders", message.Chain(handle, p.Middleware(), dedupeMW))
//
// Policy.Subscribe consumes the topic and every tier with the same
// handler chain, in one call. When the message's in-process attempts are
// exhausted, the middleware publishes a copy to the first tier and
// settles the original: the topic goes on at once. Once the tier's delay
// has passed the copy is handled again, by the same chain, with one
// attempt (Delivery.Tier is 1, Delivery.Attempt counts every earlier
// call); if it fails it goes to the next tier, and after the last tier
// to the dead-letter topic. A permanent error (Permanent,
// WithNotRetryable) skips the remaining tiers. With WithMaxAttempts(1)
// there is no in-process retry at all, as with a plain @RetryableTopic.
//
// The copy carries HeaderTierTopic (its own topic), HeaderTierGroup (the
// group that failed it: only that group handles it again),
// HeaderTier, HeaderTierDue (when it is due), HeaderTierAttempts,
// HeaderTierFirstFailure, HeaderTierError and, where the broker has them,
// HeaderTierOriginalPartition and HeaderTierOriginalOffset; with
// SpringHeaders also Spring's retry_topic-attempts (4-byte big-endian
// int: the next attempt's number), retry_topic-backoff-timestamp and
// retry_topic-original-timestamp (Unix milliseconds as Java's
// BigInteger.toByteArray). The dead-letter copy of a message that went
// through the tiers is the message of its own topic: its original-topic
// header names that topic (so Replay sends it back there, without the
// tier headers), its partition and offset are those of the first
// delivery, its attempts count every call, its first failure is the
// first one on the topic, and the tier headers stay on it as history
// (HeaderTier: the last tier). Spring's recoverer does the same
// (setReplaceOriginalHeaders(false)).
//
// Per adapter (each adapter's SubscribeTier doc has the detail):
//
//   - Kafka: one topic per tier, named like Spring's retry topics,
//     <topic>-retry-<delay in ms> (<topic>-retry-<index> from 0 when
//     delays repeat), consumed in a consumer group of its own
//     (<group>-retry-<delay>). A tier partition whose oldest record is
//     not due is paused (kgo.PauseFetchPartitions) and resumed by a timer
//     at the due time: no record is handled early and nothing polls.
//     Records wait uncommitted, so a restart or rebalance loses none.
//   - RabbitMQ: the tier is an exchange of that name and, per group, a
//     durable wait queue <topic>.<group>-retry-<delay> with the delay as
//     x-message-ttl and the group's router as x-dead-letter-exchange:
//     the broker holds the message and then routes it back into its key's
//     shard queue, where the topic's consumer handles it. Quorum queues
//     (amqp.WithQuorumQueues) dead-letter at least once
//     (x-dead-letter-strategy=at-least-once, x-overflow=reject-publish).
//     Not the delayed-message plugin, whose store is not replicated.
//   - inmem: a topic per tier, paused per partition with a timer.
//
// The price: a message retried this way gives up its place in its key's
// order. Later messages of its key are handled while it waits, and it is
// handled after them. Use delayed tiers where that is acceptable (each
// message stands alone, or the handler tolerates reordering, for example
// with a version check) and in-process retry where a key's order
// matters. An option that parks the later messages of a key until the
// retried one settles is not offered: to be correct it needs a record,
// durable and shared by every member of the group, of which keys have a
// message in a tier (a member's memory is lost to a rebalance or a crash,
// and the later messages would then run out of order without anyone
// noticing); neither Kafka nor RabbitMQ keeps one, and parking in the
// partition itself would block it again. Spring's @RetryableTopic does
// not offer it either.
//
// With New instead of NewPolicy the middleware publishes to the tiers,
// but nothing consumes them unless each tier is subscribed with the
// adapter's SubscribeTier (delay.Subscriber).
//
// # Dead-letter copy
//
// The copy (msg.Clone()) keeps the ID, Key, Payload, Time and Headers
// (except "amqp-expiration", the AMQP adapter's per-message TTL, which
// would let the broker drop the parked copy) and
// adds, in the default profile, HeaderOriginalTopic, HeaderOriginalPartition
// and HeaderOriginalOffset (only where the broker has them: Kafka and inmem,
// not AMQP), HeaderOriginalGroup, HeaderErrorMessage, HeaderErrorType,
// HeaderAttempts, HeaderFirstFailure and HeaderLastFailure (RFC 3339 in
// UTC with milliseconds). Dead-letter headers of an earlier trip are
// replaced. SpringHeaders writes Spring Kafka's kafka_dlt-* names and
// binary encodings instead (partition as a 4-byte, offset and timestamp as
// 8-byte big-endian values), so Spring consumers can read the DLT; ferry's
// attempt and failure-time headers are kept, as Spring has none. Binary
// values are Go strings holding the raw bytes: the Kafka adapter writes
// them byte for byte; on AMQP they travel as string values of those bytes.
// The default DLT name is <topic>.DLT (WithDeadLetterTopic changes it; for
// Spring Kafka 3.3's <topic>-dlt pass SpringDeadLetterTopic). The
// dead-letter topic must exist or be creatable like any topic the
// publisher writes to; on AMQP, bind a queue to it (a group subscribed to
// it) before messages are dead-lettered, or they are unroutable and the
// original is redelivered.
//
// # Spring Kafka's dead-letter headers
//
// With SpringHeaders a Spring Kafka consumer of the DLT (a @KafkaListener
// binding @Header(KafkaHeaders.DLT_...), which is required by default,
// or DLT tooling reading the headers with Spring's header mapper) reads
// ferry's record as one of Spring's own DeadLetterPublishingRecoverer:
// every header that recoverer writes (spring-kafka 4.1) is there, with its
// encoding. interop/spring_kafka_dlt_test.go checks it against Spring's
// own recoverer on a real Kafka broker. Header by header:
//
//	kafka_dlt-original-topic            Delivery.Topic, UTF-8
//	kafka_dlt-original-partition        Delivery.Partition, 4-byte big-endian int
//	kafka_dlt-original-offset           Delivery.Offset, 8-byte big-endian long
//	kafka_dlt-original-timestamp        Message.Time in Unix ms, 8-byte big-endian long
//	kafka_dlt-original-timestamp-type   "CreateTime", or "LogAppendTime" (Delivery.LogAppendTime)
//	kafka_dlt-original-consumer-group   Delivery.Group, UTF-8
//	kafka_dlt-exception-fqcn            the Go type of the handler's error, %T
//	kafka_dlt-exception-cause-fqcn      the Go type of its root cause
//	kafka_dlt-exception-message         the error's text
//	kafka_dlt-exception-stacktrace      the error chain in printStackTrace's layout (StackTrace)
//
// Partition and offset are absent where the broker has none (AMQP), the
// timestamp and its type when Time is zero, the group when it is empty.
// Go errors are not Java exceptions, so the exception headers map
// deliberately:
//
//   - fqcn: where Spring writes the class of the exception its container
//     caught (org.springframework.kafka.listener.ListenerExecutionFailedException),
//     ferry writes the type of the error the handler returned, as fmt's
//     %T prints it: "*fmt.wrapError" for fmt.Errorf("...: %w", err),
//     "*retry.PermanentError" for Permanent(err), "*message.PanicError"
//     for a panic.
//   - cause-fqcn: Spring writes the class of the exception the listener
//     threw (the container's wrapper removed); ferry writes the type of
//     the root cause: the innermost error of the errors.Unwrap chain (for
//     a joined error, of its first error), for a panic the panic value's
//     type ("string" for panic("...")), and the error's own type when it
//     wraps nothing. It is always written, as Spring always writes it.
//   - message: Spring writes "<wrapper message>; <cause message>"
//     ("Listener failed; no such order"); ferry writes the error's text,
//     which in Go already holds its causes ("load order 7: no such
//     order"); for a panic, the panic value. Truncated to
//     WithMaxErrorLength.
//   - stacktrace: Spring writes the exception's printStackTrace; a Go
//     error has no stack, and its trace is its chain of causes, written in
//     the same layout: "<type>: <text>", then "Caused by: <type>: <text>"
//     for each wrapped error, depth first. For a panic the goroutine stack
//     taken at the panic follows the first line, one tab-indented line per
//     line, where Java has its "at" frames. Written for every failure;
//     truncated to WithMaxErrorLength.
//
// Spring's recoverer publishes to the original record's partition number
// of the DLT (its default destination resolver), and lets the producer
// choose when the DLT has no such partition. With SpringHeaders the
// middleware does the same: it publishes with adapter.WithPartition, which
// the kafka publisher honours (falling back to the key's partition); with
// ferry's headers the key's partition is used. Where ferry and Spring
// differ, and a Spring consumer does not notice: Spring appends a second
// set of original-* headers when a record is dead-lettered twice (its
// consumers read the last one), ferry keeps only the latest; ferry adds
// its ferry-id, ferry-dlt-attempts and failure-time headers; the DLT
// record keeps the original's timestamp (Message.Time), where Spring's
// producer stamps the time of the dead-lettering.
//
// # Batch handlers
//
// New's middleware wraps a message.Handler; NewBatch's wraps a
// message.BatchHandler (message.SubscribeBatch's), with the same options,
// applied to each message of a batch: only the failed messages are
// retried, each with its own attempts and backoff (returned to the
// subscriber as a message.RedeliverAfter error in a *message.BatchError,
// so no worker waits), and each exhausted one is dead-lettered with its
// own error while the others settle. The two types do not convert, so a
// per-message policy never silently becomes a whole-batch one.
//
// # Order with dedupe
//
// Put retry outside dedupe: message.Chain(handle, retryMW, dedupeMW).
// Each attempt then claims the dedupe key, and a failed attempt releases
// it. The other order is wrong: when retry dead-letters a message and
// returns nil, a dedupe outside it would record the message as processed,
// and a replay of it from the DLT (same ID) would be skipped silently. In
// this order, a duplicate delivery whose key another consumer holds gets
// dedupe.ErrInProgress, which wraps message.ErrRedeliver: retry passes it
// back to the subscriber, which redelivers it later, instead of retrying it
// towards the DLT. Store errors from dedupe are retried like any handler
// error.
//
// # Replay
//
// Replay consumes a DLT with any Subscriber (its group decides where to
// start) and republishes each message to the topic named in its headers,
// without the dead-letter headers. A DLT message is settled only after its
// republish succeeded. Replay always terminates: after WithLimit messages,
// when the DLT has been idle for WithIdleTimeout (default 10 s), at the
// first message it cannot replay (malformed headers or a failed publish:
// the message stays on the DLT and the error is returned), or when ctx
// ends. Messages rejected by WithFilter are settled for the replay group
// without being republished: on Kafka they stay in the DLT log for other
// groups; on AMQP they leave the replay group's queue.
//
// # Configuration
//
// Options and defaults: WithMaxAttempts (3), WithMaxElapsedTime (none),
// WithExponentialBackoff (100 ms doubling to 10 s, ±50 % jitter; the
// default), WithConstantBackoff, WithBackoff (any
// github.com/cenkalti/backoff/v4 policy; one is created per failing
// message on its first failure, so stateful policies are never shared),
// WithNotRetryable, WithRedeliver, WithDeadLetter (none),
// WithDeadLetterTopic (<topic>.DLT), WithDelayedRetry (none; see
// Delayed retry tiers), SpringHeaders (off),
// WithMaxErrorLength (8 KiB), the hooks OnRetry and OnDeadLetter, and
// WithObserver (a message.Observer such as otelferry's Telemetry, which
// marks retries and the dead-lettering in the process span) and
// WithLogger (message.LogEvents: retries at Debug, dead-lettering at
// Warn) for logs, metrics and traces, none by default. The success path
// allocates nothing: no backoff state exists until a message fails.
//
// # Errors
//
// New returns an error wrapping message.ErrInvalidConfig that names the bad
// option. The middleware returns the handler's error, a context error, or
// an error wrapping both the dead-letter publish error and the handler
// error. ParseDeadLetter returns ErrNotDeadLetter for a message without an
// original-topic header and a *HeaderError (wrapping ErrMalformedHeader)
// naming a header it cannot decode.
package retry
