// Package inmem is ferry's in-memory adapter: a broker inside the process,
// for unit tests, examples and single-process pipelines. It needs no setup
// and keeps the same contract as the Kafka and AMQP adapters.
//
//	b, err := inmem.NewBroker(inmem.WithPartitions(4))
//	pub, err := inmem.NewPublisher(b)
//	sub, err := inmem.NewSubscriber(b, inmem.WithGroup("billing"), inmem.WithConcurrency(8))
//
// # Delivery semantics
//
// A topic is a set of partitions (WithPartitions, default 8), each an
// ordered log, like a Kafka topic. A message's Key picks its partition
// (FNV-1a hash); keyless messages go round robin. Publish returns once the
// messages are appended, and every group then receives them.
//
// A group keeps a commit point per partition: the offset below which every
// message is settled (a handler returned nil). Subscribers of one group
// split the partitions between them (partition i goes to member i mod n).
// A new group starts from the earliest message still held. A Subscribe call
// that returns and a new one in the same group resume after what was
// settled.
//
// # Rebalancing and order
//
// When members join or leave, each partition that is to move is drained by
// its owner: the owner stops fetching it, drops its queued messages and
// lets its running handlers finish. Once the drain timeout
// (WithDrainTimeout) has passed it cancels their context, and it waits
// until they have returned. Only then does the partition move, and its new
// owner starts at the commit point. A partition therefore never has
// handlers running on two members at once, and a handler that ignores its
// cancelled context keeps its partition where it is until it returns. The
// owner keeps handling its other partitions while it drains one. A move can
// be called off while the partition drains (the member it was to go to
// leaves again, or another join makes the owner the rightful one again);
// the owner then takes the partition back, also from the commit point, so
// the messages it dropped are delivered again in order rather than
// skipped.
//
// So per key, order holds across rebalances: each message of a key is
// first handled successfully after every earlier message of that key, and
// two handlers of one key never run at the same time, on one member or on
// two. Delivery is at least once: the new owner of a partition gets again
// every message from the commit point on. That includes messages of other
// keys that were already settled beyond it, since the commit point only
// passes a contiguous run of settled messages. Messages that were handed
// out before are marked with Delivery.Redelivered and Attempt 2.
//
// Within a Subscribe call, the shared keyed dispatcher runs up to
// WithConcurrency handlers at once, never two with the same key, same-key
// messages in publish order. A handler error or panic redelivers the same
// message after WithRedeliveryBackoff (capped exponential), before later
// messages with its key; other keys keep flowing. At most WithMaxPending
// messages are fetched and unsettled per Subscribe call.
//
// Delivery metadata: Topic, Group, Attempt, Partition and Offset are set;
// DeliveryTag is 0. A delivered Message shares Payload and Headers with the
// stored one: handlers must not modify them.
//
// Memory stays bounded: a message is dropped once every group that exists
// has settled it (while no group exists, everything is kept for the first
// one). WithRetention keeps the last N messages or those younger than an
// age for groups that join later. A group remembers its position for the
// life of the Broker, even with no member, and holds back dropping until it
// settles.
//
// Subscribe calls message.WithReady's function once the member joined its
// group, before its first fetch: the group's offsets exist then, so every
// message published afterwards reaches the group.
//
// # Batches
//
// Subscriber.SubscribeBatch calls a message.BatchHandler with batches cut
// from the keyed dispatcher (package adapter/dispatch, "Batches"): up to
// the concurrency batches at once, no key in two of them, a key's
// messages in publish order; limits by message.WithBatchMaxMessages,
// WithBatchMaxBytes and WithBatchMaxWait. A *message.BatchError settles
// the messages it does not name, except the later messages of a failed
// message's key, which are redelivered with it; a partition's commit
// point stays at the oldest unsettled message, as for Subscribe.
//
// # Delayed retry tiers
//
// retry.WithDelayedRetry's tiers are topics of the Broker,
// <topic>-retry-<delay in ms>, consumed by Subscriber.SubscribeTier
// (retry.Policy.Subscribe calls it): a partition whose oldest message is
// not due is not fetched until a timer fires at its due time, so nothing
// is handled early and nothing polls; the topic and the other partitions
// go on. What waits in a tier stays there when the Subscribe call ends
// and is resumed by the group's next member.
//
// # Testing a service
//
// The broker is also the tool to test an application's services with, as
// net/http/httptest is for HTTP handlers: deterministic, fast, and without
// sleeps or sentinel messages.
//
//   - Broker.WaitSettled blocks until a group has settled every message
//     published to a topic so far (or its context ends; the error then
//     says what is unsettled, per partition, and which message is next).
//     A test reads "publish; wait; assert".
//   - Broker.Messages is a snapshot of what a topic holds, in publish
//     order: what a service published (notifications, a dead-letter topic
//     that nobody consumes keeps everything).
//   - Broker.Lag is per partition how far a group is behind: 0 once it
//     settled everything.
//   - Handle runs a handler chain (retry and dedupe middleware included)
//     on one message without a broker, with the Delivery fields a
//     subscriber sets, redelivering a failed message at once with the
//     next Attempt, and reports each attempt's error and the redelivery
//     delay it asked for.
//
// See ExampleBroker_WaitSettled and ExampleHandle, and the orders
// example's services_test.go for a service tested end to end.
//
// # Configuration
//
// Options are typed by the constructor that takes them: NewBroker takes
// BrokerOptions, NewSubscriber SubscriberOptions, so an option given to
// the wrong one is a compile error; NewPublisher takes none. Every option
// is validated by its constructor: a bad value fails it with an error
// wrapping message.ErrInvalidConfig that names the option ("inmem: ferry:
// invalid configuration: WithPartitions(0): want 1..65536"); nothing is
// clamped. Nil options are skipped.
//
//	BrokerOption           default
//	WithPartitions         8 (DefaultPartitions); 1 to 65536
//	WithRetention          0, 0: nothing kept beyond what a group has not settled
//
//	SubscriberOption       default
//	WithGroup              "default"
//	WithConcurrency        1
//	WithRedeliveryBackoff  100ms doubling to 10s
//	WithDrainTimeout       30s
//	WithMaxPending         4096, and at least the concurrency
//	WithLogger             nil: no logging
//	WithObserver           none (also a Publisher option)
//
// WithLogger means what it means on the other adapters, the adapter's
// operational log in the one format of message.LogEvents; in memory that
// is each handler error at Debug (system, topic, group, partition,
// offset, id, attempt, err) before the redelivery. WithObserver gives the
// adapter's events to a message.Observer (such as otelferry's Telemetry):
// Publish calls, handled messages, handler errors and the lag of each
// owned partition (appended minus committed, every 100 ms when it
// changed).
//
// # Errors
//
// Topic names follow Kafka's rules (1 to 249 of letters, digits, '.', '_',
// '-'; not "." or ".."), so code tested on inmem runs on Kafka; others give
// message.ErrInvalidTopic. A nil message gives message.ErrInvalidMessage and
// publishes nothing of the batch; a nil handler gives message.ErrNilHandler.
// After Close (of the publisher, subscriber or broker) calls return
// message.ErrClosed. Invalid options give message.ErrInvalidConfig.
package inmem
