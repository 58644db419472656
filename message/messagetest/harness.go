package messagetest

import (
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// Harness tells the suite how to build an adapter's publishers and
// subscribers and what the adapter can do.
type Harness struct {
	// NewPublisher returns a new publisher. Required. The suite closes it.
	NewPublisher func(t testing.TB) (message.Publisher, error)

	// NewSubscriber returns a new subscriber configured as cfg says.
	// Required. The suite closes it.
	NewSubscriber func(t testing.TB, cfg SubscriberConfig) (message.Subscriber, error)

	// Prepare, when set, creates what must exist before messages are
	// published to topic so that the given groups receive them (a Kafka
	// topic, AMQP exchange, queues and bindings). The suite calls it before
	// publishing to a fresh topic.
	Prepare func(t testing.TB, topic string, groups ...string)

	// NewTopic, when set, returns a fresh topic name; by default the suite
	// makes one from the test name and a random suffix using letters,
	// digits, '.', '_' and '-'.
	NewTopic func(t testing.TB) string

	// RestartBroker stops and starts the broker (or cuts every client
	// connection and lets them back in). Used when Features.Restart is set.
	RestartBroker func(t testing.TB)

	// Kill, when set, ends s as a process crash would: its connection is
	// gone at once and no further acknowledgement reaches the broker. s is
	// a subscriber that NewSubscriber returned, with a Subscribe running.
	// Kill must return promptly; the suite then closes s (in the
	// background, since closing a crashed client may wait for timeouts)
	// and waits for Close and Subscribe to return before the test ends.
	// Before calling Kill the suite marks the member dead: its handler
	// records nothing and fails at once from then on, and calls still
	// running no longer count (a killed process's handlers do not run on).
	// When Kill is nil the suite emulates the crash with that gate and
	// Close alone, so the adapter's graceful shutdown runs, which is a
	// weaker test of redelivery after a crash.
	Kill func(t testing.TB, s message.Subscriber)

	// Features declares optional capabilities.
	Features Features
}

// SubscriberConfig is what the suite asks of a subscriber.
type SubscriberConfig struct {
	// Group is the consumer group (AMQP: the queue's group name).
	Group string
	// Concurrency is the maximum number of handlers running at once.
	Concurrency int
	// InitialBackoff and MaxBackoff bound the redelivery backoff after a
	// handler error. The suite passes small values so it runs fast.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// DrainTimeout is how long shutdown waits for in-flight handlers before
	// cancelling their context.
	DrainTimeout time.Duration
}

// Features are an adapter's optional capabilities. The zero value runs the
// core tests only.
type Features struct {
	// NewGroupReadsHistory: a group created after messages were published
	// still receives them (Kafka, inmem). False for AMQP, where a queue
	// only receives what is published after it is bound. The suite tests it
	// after another group has settled thousands of messages, so the harness
	// must keep settled history (inmem: WithRetention).
	NewGroupReadsHistory bool

	// Restart: RestartBroker is set, and publishing and consuming survive
	// it with nothing lost.
	Restart bool

	// NoBatch: the adapter has no batch handlers (its subscribers do not
	// implement message.BatchSubscriber), so the "batch:" tests
	// (batch.go) are not run.
	NoBatch bool

	// NoKeyOrder: the adapter, in the mode the harness configures, does
	// not keep per-key order (a Kafka share group hands one partition's
	// records to many members at once, each acknowledged on its own).
	// The three per-key order tests are not run, and the redelivery tests
	// check each message's attempts (1, 2, ... in that order) without
	// their order among the key's other messages.
	NoKeyOrder bool

	// InvalidTopics are topic names the adapter must reject with
	// ErrInvalidTopic (besides "", which every adapter rejects).
	InvalidTopics []string

	// MaxPayload is the largest payload the round-trip test sends; 0
	// means 1 MiB.
	MaxPayload int

	// Timeout bounds each wait of the suite; 0 means 30 s. Real brokers
	// with slow group rebalances want more.
	Timeout time.Duration
}
