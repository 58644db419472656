// Package message is ferry's core: the Message type, the Publisher and
// Subscriber interfaces every adapter implements, Handler and Middleware,
// and the sentinel errors. It imports nothing outside the standard library.
//
// Pick a broker by constructing an adapter (package inmem, kafka or amqp);
// write the rest of the service against these interfaces.
//
// # Delivery semantics
//
// Publish returns only when the broker has durably accepted every message
// (Kafka acks=all with the idempotent producer, RabbitMQ publisher confirms
// with mandatory routing, inmem once appended). A nil error means nothing was
// lost. A batch is not atomic: a *PublishError lists the messages that
// failed so that just those can be retried. Publish fills in ID (NewID, a
// UUIDv7) and Time where they are empty.
//
// Subscribe delivers at least once. A handler's return value is the
// acknowledgement: nil settles the message for the subscriber's group; an
// error or a panic (recovered into a *PanicError) makes the subscriber
// deliver the same message again after a capped exponential backoff, with
// Delivery.Attempt one higher, before any later message with the same Key.
// Nothing is dropped by default; bounding the retries and dead-lettering is
// the job of the retry middleware.
//
// Subscribers in the same group share the work, each message going to one
// member; different groups each receive every message. Up to the configured
// concurrency handlers run at once; messages with the same non-empty Key are
// never handled concurrently and are handled in publish order. Messages with
// an empty Key may run in any order.
//
// On ctx cancellation Subscribe stops fetching, lets in-flight handlers
// finish (their context is cancelled only after a drain timeout), settles
// what finished and returns nil. A subscriber restarted in the same group
// continues after the settled messages. After a crash, messages that were in
// flight are delivered again: use the dedupe middleware for
// effectively-once processing.
//
// # Batches
//
// Every adapter's subscriber is also a BatchSubscriber: SubscribeBatch
// calls a BatchHandler with batches of messages, cut so that no two
// running batches share a key and a key's messages are in publish order,
// at most the subscriber's concurrency batches at once, each handed over
// as soon as it is full (WithBatchMaxMessages, WithBatchMaxBytes) or its
// wait is over (WithBatchMaxWait), never empty. The handler reports
// per-message failures with a *BatchError: the others settle, and each
// failed message is redelivered with the later messages of its key in the
// batch, before any later message of that key; other keys go on. A plain
// error or a panic redelivers the whole batch. Each message's Delivery is
// as for Subscribe (Attempt per message). Batch middleware has its own
// type, BatchMiddleware (retry.NewBatch, dedupe.NewBatch), so a
// per-message Middleware cannot be applied to a batch by mistake.
//
// # Readiness
//
// A Subscribe call blocks while it consumes, so the caller cannot see when
// it started consuming. WithReady puts a function into Subscribe's context
// that every adapter calls once, from Subscribe, when the subscription is
// consuming: a message published after it was called reaches the
// subscriber's group, without a warm-up message. Each adapter's package
// documentation says what ready means there (inmem: joined the group;
// kafka: joined the group and got its first, possibly empty, partition
// assignment; amqp: the group's queues declared and bound, the member
// announced). A Subscribe that fails before consuming (bad input, Close,
// a cancelled context) does not call it.
//
//	ready := make(chan struct{})
//	go sub.Subscribe(message.WithReady(ctx, func() { close(ready) }), "orders", h)
//	<-ready // the subscription consumes; publish
//
// # Errors
//
// Sentinel errors (ErrClosed, ErrInvalidTopic, ErrInvalidMessage,
// ErrMessageTooLarge, ErrNilHandler, ErrUnroutable, ...) are wrapped with
// context by the adapters; check them with errors.Is. Broker errors are
// wrapped too, so errors.As finds the client's own error types. Context
// errors (context.Canceled, context.DeadlineExceeded) are returned
// unwrapped. Bad input (an empty topic, a nil message, a nil handler) is
// rejected before anything is published.
//
// A handler may return an error wrapping ErrRedeliver to say "not now"
// (another consumer holds the message, a rate limit): it is redelivered
// like any failure, but middleware such as retry passes it through instead
// of retrying it in-process or dead-lettering it. An error made with
// RedeliverAfter(err, d) chooses the wait before the redelivery: every
// subscriber redelivers the message after d instead of after its own
// backoff, without holding a worker meanwhile; the retry middleware waits
// between its attempts this way.
package message
