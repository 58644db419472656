package message

import (
	"context"
	"time"
)

// Message is the unit that ferry publishes and delivers.
//
// A Message is owned by the caller until it is passed to Publish. A
// delivered Message is read-only for its handler: a redelivery passes the
// same value to the handler again, so a change made by one attempt would be
// seen by the next (use Clone for a copy to change). A handler may keep a
// delivered Message, its Payload and its Headers after it returns: no
// adapter reuses them for another delivery.
type Message struct {
	// ID identifies the message. Publish fills in a time-ordered ID (NewID)
	// when it is empty. It is the default key of the dedupe middleware.
	ID string

	// Key is the ordering key. Messages with the same non-empty key are
	// handled in publish order and never concurrently; on Kafka they land on
	// the same partition. Messages with an empty key have no ordering
	// constraint.
	Key string

	// Payload is the body, carried as opaque bytes. It may be empty.
	Payload []byte

	// Headers are application headers, carried end to end. Keys starting
	// with "ferry-" are reserved by ferry.
	Headers map[string]string

	// Time is the publish time. Publish sets it to time.Now() when it is
	// zero. It is carried end to end with millisecond precision or better,
	// depending on the broker (Kafka and AMQP keep milliseconds).
	Time time.Time

	// Delivery is set by a Subscriber before a handler runs and is ignored
	// by Publish.
	Delivery Delivery
}

// Delivery is the metadata a Subscriber attaches to a delivered message.
type Delivery struct {
	// System names the broker the message came from, as the OpenTelemetry
	// messaging conventions name it (messaging.system): "kafka",
	// "rabbitmq", or "inmem" for ferry's in-memory broker.
	System string
	// Topic the message was consumed from.
	Topic string
	// RoutingKey is the AMQP routing key the message was published with;
	// empty elsewhere.
	RoutingKey string
	// Group is the consumer group (or queue group) that received it.
	Group string
	// Attempt is 1 on the first delivery and grows by one on each
	// redelivery the library knows of: a handler error, or a broker
	// redelivery flag after a crash or reconnect. A message back from a
	// delayed retry tier (retry.WithDelayedRetry) counts the handler calls
	// made before it entered the tier too.
	Attempt int
	// Tier is the delayed retry tier the message comes back from (1 for
	// the first, see retry.WithDelayedRetry); 0 on its first trip through
	// its topic.
	Tier int
	// Partition is the Kafka partition or in-memory partition; -1 where the
	// broker has none (AMQP).
	Partition int32
	// Offset is the position within the partition; -1 where the broker has
	// none (AMQP).
	Offset int64
	// DeliveryTag is the AMQP delivery tag; 0 elsewhere.
	DeliveryTag uint64
	// Redelivered reports that the broker says this message was delivered
	// before (AMQP redelivered flag, or an in-memory/Kafka delivery of a
	// position that was handed out before but not settled).
	Redelivered bool
	// LogAppendTime reports that Message.Time is the time the broker
	// appended the message to its log (a Kafka topic configured with
	// message.timestamp.type=LogAppendTime), not the producer's create
	// time. False elsewhere. Spring Kafka's dead-letter header
	// kafka_dlt-original-timestamp-type comes from it.
	LogAppendTime bool
}

// Handler processes one message. Its return value is the acknowledgement:
// nil settles the message for the subscriber's group; an error (or a panic)
// makes the subscriber deliver the same message again, after a backoff and
// before any later message with the same key.
//
// The context is cancelled when the subscriber gives up waiting for the
// handler during shutdown (after its drain timeout), not when shutdown
// starts.
type Handler func(ctx context.Context, msg *Message) error

// Middleware wraps a Handler with extra behaviour (retries, dedupe, logging).
type Middleware func(Handler) Handler

// Chain wraps h in the given middleware. mw[0] is the outermost: it sees the
// message first and the result last. Nil middleware are skipped.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		if mw[i] != nil {
			h = mw[i](h)
		}
	}
	return h
}

// Publisher publishes messages to a topic.
//
// Publish returns only when the broker has durably accepted every message; a
// nil error means nothing was lost. A batch is not atomic: on partial failure
// the error is a *PublishError listing the failed messages. Publish fills in
// ID and Time where they are empty, and is safe for concurrent use. After
// Close it returns ErrClosed.
type Publisher interface {
	Publish(ctx context.Context, topic string, msgs ...*Message) error
	Close() error
}

// Subscriber consumes a topic and calls a handler for each message.
//
// Subscribe blocks until ctx is cancelled (it then drains in-flight handlers,
// settles what finished and returns nil), Close is called (ErrClosed), or a
// fatal error occurs. The group, concurrency and redelivery backoff are
// configured when the Subscriber is constructed.
type Subscriber interface {
	Subscribe(ctx context.Context, topic string, h Handler) error
	Close() error
}
