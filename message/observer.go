package message

import (
	"context"
	"time"
)

// Observer receives the events of adapters and middleware: what was
// published, handled, retried, dead-lettered or skipped, connection losses,
// failed commits and consumer lag. It is the one hook for logs, metrics and
// tracing: every adapter takes one with its WithObserver option (and turns
// WithLogger into one, see LogEvents), the retry and dedupe middleware with
// theirs, and package otelferry implements it for metrics and span events.
//
// Observe is called synchronously on the goroutine where the event
// happened (a handler's, a poll loop's, a connection watcher's),
// concurrently for different events, with the context of the operation
// where there is one (a handler's context for retry, dead-letter and
// duplicate events, so a span in it is the handler's). It must return
// quickly and must not block; it must not modify ev.Msg or ev.Msgs.
type Observer interface {
	Observe(ctx context.Context, ev Event)
}

// ObserverFunc is a function used as an Observer.
type ObserverFunc func(ctx context.Context, ev Event)

// Observe calls f(ctx, ev).
func (f ObserverFunc) Observe(ctx context.Context, ev Event) { f(ctx, ev) }

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of events, with who reports them and the Event fields set
// besides Kind, System, Topic and Group (and Msg where a message is
// concerned).
const (
	// EventPublished: a Publish call succeeded (adapters' Publishers).
	// Msgs, Count, Duration.
	EventPublished EventKind = iota + 1
	// EventPublishFailed: a Publish call failed, for some or all of its
	// messages (adapters' Publishers). Msgs, Count, Failed, Duration, Err.
	EventPublishFailed
	// EventHandled: a handler returned nil and the message is settled
	// (adapters' Subscribers). Msg, Attempt.
	EventHandled
	// EventHandlerError: a handler returned an error (or panicked); the
	// adapter delivers the message again after its redelivery backoff
	// (adapters' Subscribers). Msg, Attempt, Err.
	EventHandlerError
	// EventRetry: the retry middleware will call the handler again after
	// Delay. Msg, Attempt (the one that failed), Delay, Err.
	EventRetry
	// EventDeadLettered: the retry middleware published a copy of the
	// message to DeadLetterTopic (Err is the handler error), or failed to
	// (PublishErr set; the message is then redelivered). Msg, Attempt
	// (attempts recorded in the copy), DeadLetterTopic, Err, PublishErr.
	EventDeadLettered
	// EventDuplicateSkipped: the dedupe middleware skipped a message whose
	// key was processed before. Msg, DedupeKey.
	EventDuplicateSkipped
	// EventConnectionLost: the connection to the broker was lost, or a
	// reconnection attempt failed (Attempt > 0); the adapter goes on
	// reconnecting. Broker, Role, State, Attempt, Err.
	EventConnectionLost
	// EventConnectionRestored: the adapter connected (again). Broker,
	// Role, State, Attempt (reconnection attempts it took; 0 for the
	// first connection).
	EventConnectionRestored
	// EventCommitFailed: committing consumed positions failed (Kafka);
	// the uncommitted messages are delivered again after a restart or a
	// rebalance. Partition (-1 when the commit covered several), Err.
	EventCommitFailed
	// EventLag: the consumer lag of one partition or queue changed (Kafka:
	// high watermark minus the group's commit point, from the fetches
	// franz-go makes anyway; RabbitMQ: the queue's ready messages, polled
	// at a bounded interval; inmem: appended minus committed). Partition
	// (the Kafka or in-memory partition, the AMQP shard; -1 for one
	// queue), Lag (-1: the partition is no longer this subscriber's, forget
	// it).
	EventLag
)

var kindNames = [...]string{
	EventPublished:          "published",
	EventPublishFailed:      "publish failed",
	EventHandled:            "handled",
	EventHandlerError:       "handler failed",
	EventRetry:              "retry",
	EventDeadLettered:       "dead-lettered",
	EventDuplicateSkipped:   "duplicate skipped",
	EventConnectionLost:     "connection lost",
	EventConnectionRestored: "connection restored",
	EventCommitFailed:       "commit failed",
	EventLag:                "lag",
}

// String returns the kind's name, as in log messages ("handler failed").
func (k EventKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown event"
}

// Event is one observed event. Which fields are set depends on Kind (see
// the EventKind constants); the others are zero, Partition -1.
type Event struct {
	Kind EventKind
	// System is the broker, as Delivery.System names it: "kafka",
	// "rabbitmq" or "inmem".
	System string
	// Topic and Group are those of the publish or subscription.
	Topic string
	Group string

	// Msg is the message concerned, for events about one message.
	Msg *Message
	// Msgs are the messages of a Publish call; Count is len(Msgs) and
	// Failed how many of them failed (EventPublishFailed).
	Msgs   []*Message
	Count  int
	Failed int

	// Attempt is the delivery attempt concerned, or the reconnection
	// attempt of connection events.
	Attempt int
	// Partition is the partition, shard or queue index of lag and commit
	// events; -1 where there is none.
	Partition int32
	// Lag is the number of messages of Partition not yet consumed and
	// settled by Group (EventLag).
	Lag int64
	// Delay is the wait before the next attempt (EventRetry).
	Delay time.Duration
	// Duration is how long a Publish call took.
	Duration time.Duration
	// DeadLetterTopic is where the copy went (EventDeadLettered).
	DeadLetterTopic string
	// DedupeKey is the key a duplicate was recognised by.
	DedupeKey string
	// Broker is the broker address (password redacted), Role "publisher"
	// or "subscriber", and State the adapter's own name of the connection
	// state ("disconnected", "reconnecting", "connected"), for connection
	// events.
	Broker string
	Role   string
	State  string

	// Err is the error of the event: the handler's, the publish's, the
	// connection's or the commit's.
	Err error
	// PublishErr is set when publishing a dead-letter copy failed.
	PublishErr error
}

// MessageEvent returns an Event of kind about msg, with System, Topic,
// Group and Attempt from msg.Delivery and Partition -1.
func MessageEvent(kind EventKind, msg *Message) Event {
	ev := Event{Kind: kind, Msg: msg, Partition: -1}
	if msg != nil {
		d := &msg.Delivery
		ev.System, ev.Topic, ev.Group, ev.Attempt = d.System, d.Topic, d.Group, d.Attempt
	}
	return ev
}

// Observers returns an Observer that passes each event to every non-nil
// observer given, in order. It returns nil when none is given, and the
// observer itself when only one is.
func Observers(obs ...Observer) Observer {
	var out multiObserver
	for _, o := range obs {
		switch o := o.(type) {
		case nil:
		case multiObserver:
			out = append(out, o...)
		default:
			out = append(out, o)
		}
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return out
}

type multiObserver []Observer

func (m multiObserver) Observe(ctx context.Context, ev Event) {
	for _, o := range m {
		o.Observe(ctx, ev)
	}
}
