// Package amqp is ferry's RabbitMQ adapter, built on
// github.com/rabbitmq/amqp091-go. It implements message.Publisher and
// message.Subscriber with publisher confirms, mandatory routing, keyed
// ordered dispatch and automatic reconnection.
//
//	pub, err := amqp.NewPublisher("amqp://guest:guest@localhost:5672/")
//	sub, err := amqp.NewSubscriber(url, amqp.WithGroup("billing"), amqp.WithConcurrency(8))
//	err = sub.Subscribe(ctx, "orders", handler) // blocks until ctx ends
//
// # Topology
//
// A topic is a durable exchange named after it, of type "topic" by default
// (WithExchangeKind for "fanout" or "direct"). A message's routing key is
// its Key (WithRoutingKey to change), and a group takes what matches its
// binding key: "#" on topic exchanges, that is everything (WithBindingKey
// for a pattern such as "order.*" or "order.#").
//
// A group is laid out like a Kafka consumer group, so that its members
// share the work and still handle each key in order, one message at a
// time. With base = "<topic>.<group>" (WithQueueName to change):
//
//	exchange <topic>  ──binding key──▶  headers exchange <base>  (the router)
//	router ──ferry-shard-<b>──▶  durable queue <base>.<b mod N>   (the shards, N = WithShards, default 16)
//	router ──no ferry-shard-*──▶  fanout exchange <base>.unsharded (its alternate exchange) ──▶ <base>.0
//	fanout exchange <base>.members: the members' heartbeats (not durable)
//
// Publishers put every message in one of ShardBuckets (64) buckets, the
// FNV-1a hash of its Key (of its ID when it has no Key), and mark it with
// the header "ferry-shard-<bucket>" (ShardHeader); the router sends bucket
// b to shard b mod N, with one binding per shard that matches any of its
// buckets' headers (a headers exchange checks every binding for every
// message, so N bindings cost far less than one per bucket). All messages
// of a key thus land in one shard, in publish order. Keyless messages
// spread over all shards. Messages from other producers have no
// ferry-shard header and all go to shard 0, in the order they were
// published (a producer in another language can compute ShardBucket and
// set the header itself to spread its messages).
//
// Each shard is consumed by exactly one member at a time, on a channel of
// its own. Shard queues are declared with x-single-active-consumer, so the
// broker lets only one consumer of a shard receive at a time (a second one
// waits as its standby) and activates the next only after the previous
// one is gone and its unacked deliveries are back in the queue.
// Members find each other by heartbeats through <base>.members (every
// WithGroupHeartbeat, 500 ms by default) and each computes the same
// assignment: members sorted by a random ID, shard s to member s mod M. A
// group of more members than shards leaves the extra members idle, as a
// Kafka group with more members than partitions does.
//
// # Order while shards move
//
// When a member joins or leaves, shards move. A member giving up a shard
// stops handing its deliveries to handlers, drops the ones that have not
// started, lets the running ones finish and acks them (their context is
// cancelled after WithDrainTimeout, theirs only: the member's other shards
// go on), and only then closes the shard's channel: the broker puts the prefetched, unacked
// deliveries back at the head of the queue in their order, and only then
// lets the next member consume. The new owner therefore starts with the
// oldest unsettled message of every key of the shard, and no key runs on
// two members at once. A member that leaves gracefully (ctx cancelled or
// Close) announces it after closing its shards, so the others take them
// over at once. A member that crashes or loses its connection frees its
// shards at once on the broker (its unacked deliveries return to the
// queue, flagged redelivered), and the others take them over once its
// heartbeats have been missing for four intervals (2 s by default): those
// deliveries are handled again, before any later message of their key. A
// handler of a member that lost its connection but still runs past those
// four intervals can overlap with the next owner's redelivery of the same
// message; a crashed process's handlers do not run on.
//
// # Changing the shard count
//
// Every member of a group, and Publisher.Declare, must use the same
// WithShards. A member that hears a peer announce another count logs an
// error. The count is fixed when the group is first declared: more
// shards would bind more queues into the router (and change the bucket to
// shard mapping, so that the messages of a key waiting in the old shard
// would race the new ones). To change it, create a new group with the new
// count (WithGroup), let the old group's members drain its queues, then
// stop them and delete the old group's queues and exchanges.
//
// # Competing consumers
//
// WithCompetingConsumers gives the classic work queue instead: one durable
// queue <base> bound to the topic's exchange, consumed by every member,
// the broker handing deliveries round robin. It gives up per-key order
// across members (order and one-at-a-time per key hold only inside one
// member). It is also how to consume a queue that ferry versions before
// sharded groups created: such a queue stays bound to the topic exchange
// and keeps receiving copies until it is deleted, so delete it once a
// sharded group has replaced it.
//
// # Declaring
//
// Publishers declare the exchange on first use of a topic; subscribers
// declare the exchange and their group's topology when Subscribe starts.
// Both declare idempotently, once per connection, and again after every
// reconnection. Queues are classic by default; WithQuorumQueues makes them
// quorum queues, WithQueueArgs adds arguments (x-max-length,
// x-message-ttl, x-delivery-limit, ...) and WithDeadLetterExchange sets
// the native x-dead-letter-exchange, on every shard queue. Declaring an
// existing exchange or queue with other settings fails with
// PRECONDITION_FAILED, reported as an error wrapping
// message.ErrInvalidConfig.
//
// A queue only receives messages published after it is bound: a new group
// does not read history, and a message published to a topic with no bound
// queue is unroutable. Create a group's topology ahead of the first
// publish with Publisher.Declare(ctx, topic, groups...) or
// Subscriber.Declare, with the same options as the subscribers, or name
// the groups in the publisher's WithDeclareGroups: it declares them with
// the topic's exchange at its first use of each topic and after every
// reconnection.
//
// Subscribe calls message.WithReady's function once it consumes: with
// groups, after the exchange, the group's shard queues and their bindings
// are declared and the member announced itself to the group and tried its
// first shard claims (it may own no shard yet, or none at all when the
// group has more members than shards); with WithCompetingConsumers, after
// the queue is declared, bound and consumed. A message published after
// ready is routed to the group's queues and kept for it.
//
// Topic names are exchange names: 1 to 255 bytes of letters, digits, '-',
// '_', '.' and ':', not starting with "amq." (reserved by RabbitMQ).
//
// # Delayed retry tiers
//
// retry.WithDelayedRetry's tiers use RabbitMQ's own delay: the tier is an
// exchange named <topic>-retry-<delay in ms> and, per group, a headers
// exchange and a durable wait queue <topic>.<group>-retry-<delay in ms>
// that takes only that group's messages (the ferry-retry-group header),
// declared by Subscriber.SubscribeTier (retry.Policy.Subscribe calls it)
// and again after every reconnection. The wait queue has the delay as
// x-message-ttl and the group's router as x-dead-letter-exchange: the
// broker keeps the message for the delay, then routes it through the
// router, by its ferry-shard header, back into its key's shard queue (with
// WithCompetingConsumers: into the group's queue), where the topic's
// consumer hands it to the handler with Delivery.Tier set and
// Delivery.Attempt counting the earlier calls. One TTL per queue keeps
// the queue in due order, so its head always expires first. With
// WithQuorumQueues the wait queues are quorum queues dead-lettering at
// least once (x-dead-letter-strategy at-least-once, x-overflow
// reject-publish). Waiting messages are persistent and survive a broker
// restart. The delayed-message plugin is not used: its messages live in
// a table that is not replicated.
//
// # Message mapping
//
// ID is the AMQP message_id; Time is the timestamp property (whole
// seconds, for other clients) and, unless the ID is a UUIDv7 (as
// message.NewID makes them) of Time's millisecond, the "ferry-time"
// header (Unix milliseconds, an AMQP long): Time keeps milliseconds
// either way (a subscriber of a ferry version before this rule, or a
// client reading only ferry-time, sees whole seconds for such a message),
// and the usual message (ID and Time filled in by Publish) costs the
// broker one header less; Key is the
// "ferry-key" header (WithKeyHeader) and, by default, the routing key;
// Headers are the header table, as strings, plus the ferry-shard-<bucket>
// header (see Topology), except the property headers below; messages are
// persistent (delivery mode 2) unless DeliveryModeHeader says "1". On
// delivery the ferry-key and ferry-time headers become Key and Time, and
// they and the ferry-shard-<bucket> header are removed from Headers. A
// message from another producer without ferry-key has an empty Key (no
// ordering constraint), without ferry-time the millisecond of its
// message_id when that is a UUIDv7 in the second of its timestamp property
// (what ferry sends), else the timestamp property as Time (zero when it
// has none; older ferry versions always send ferry-time, so their
// messages decode as before), and without message_id an empty ID (AMQP has
// no position to derive one from; the dedupe middleware then needs another
// key, such as dedupe.KeyByHeader on a header of that producer's). Header
// values of any AMQP type (numbers, booleans, timestamps, byte arrays, and
// the arrays of tables of x-death) are converted to strings by
// HeaderString and never cause a message to be rejected.
//
// The other AMQP properties are headers named "amqp-" and the property's
// name in the AMQP 0-9-1 specification, constants of this package:
//
//	header                 AMQP property     publish (header to property)   delivery (property to header)
//	amqp-content-type      content_type      as it is, at most 255 bytes    when set
//	amqp-content-encoding  content_encoding  as it is, at most 255 bytes    when set
//	amqp-correlation-id    correlation_id    as it is, at most 255 bytes    when set
//	amqp-reply-to          reply_to          as it is, at most 255 bytes    when set
//	amqp-type              type              as it is, at most 255 bytes    when set
//	amqp-app-id            app_id            as it is, at most 255 bytes    when set
//	amqp-priority          priority          "0" to "255"                   when not 0, in decimal
//	amqp-expiration        expiration        TTL in ms, a decimal integer   when set
//	amqp-delivery-mode     delivery_mode     "1" transient, "2" persistent  "1" when not persistent
//	amqp-user-id           user_id           never published                when set (checked by RabbitMQ)
//
// On publish such a header sets its property and is not written to the
// header table (without amqp-delivery-mode, or with "2", the message is
// persistent); an empty value is the same as no header, and a value the
// table does not allow fails Publish with message.ErrInvalidMessage
// before anything is sent. amqp-user-id is delivered but not published: the
// broker closes the channel of a publish whose user_id is not the
// connection's user, and a delivered message must be publishable again
// as it is (a dead-letter copy, a replay, a bridge). On delivery the
// headers come from the properties only: a header-table entry with one of
// these names (ferry never writes one; only another producer can) is
// dropped. Any other header, such as "content-type" or "amqp-foo", is an
// ordinary table entry both ways. cluster_id (deprecated, and not in
// amqp091-go) is not mapped.
//
// Spring AMQP's JSON converters (Jackson2JsonMessageConverter and
// JacksonJsonMessageConverter) convert a message whose content_type
// contains "json" (or that has none: Spring then sees its default,
// application/octet-stream, and assumes JSON; any other type, such as
// text/plain, gets the raw bytes) to the Java class named by the
// "__TypeId__" table entry (a Map or a Collection also needs
// "__KeyTypeId__" and "__ContentTypeId__"; a @RabbitListener method
// prefers its parameter's type when that is a concrete class). So for
// RabbitTemplate.receiveAndConvert or a listener a ferry message has
//
//	Headers: map[string]string{
//		amqp.ContentTypeHeader: "application/json",
//		"__TypeId__":           "com.example.orders.Order", // a class the consumer trusts
//	}
//
// and a message sent with RabbitTemplate.convertAndSend arrives with those
// two headers, amqp-content-encoding "UTF-8" (Spring's charset), the
// properties its MessagePostProcessor set, its own headers as strings, and
// its message_id as ID, or a derived ID (below) when it set none. Forwarded as it is, it reaches Spring
// as the same object with the same properties. The tests in interop/ check
// all of this against Spring AMQP itself.
//
// A delivery without message_id (from another producer) gets the ID
// DerivedID computes: ForeignIDPrefix ("amqp-") and 32 hex digits of the
// SHA-256 of the topic, the body, the header table without the headers
// the broker adds (x-delivery-count, x-death, x-first-death-*,
// x-last-death-*, x-received-from) and the properties. AMQP has no offset
// to key a message by, but these are the same on every redelivery of one
// stored message, also after a dead-letter cycle, so the ID is stable and
// the dedupe middleware recognises a redelivery. The price: two messages
// published with identical body, headers and properties are one message
// to dedupe, and the second is skipped as a redelivery of the first. A
// producer whose identical messages must each be handled sets message_id
// (or the timestamp property, or any header that differs).
//
// # Delivery semantics
//
// Publish returns nil only when the broker confirmed every message
// (publisher confirms) and routed it to at least one queue (mandatory
// flag; a basic.return makes that message fail with
// message.ErrUnroutable). Confirms are windowed: a batch is written at once
// and its confirms awaited together, and concurrent Publish calls share a
// channel, each waiting only for its own confirms (the messages of
// concurrent calls may interleave on it). A batch goes to one channel in
// order. The publisher's connection gathers what is written while its
// socket is busy (the next messages of a batch, concurrent calls) into one
// socket write, instead of one write per message. A batch is not atomic:
// failed messages are listed in a
// *message.PublishError (ErrUnroutable, ErrNacked, or a channel error).
// Payloads over WithMaxPayload (default 16 MiB) fail with
// message.ErrMessageTooLarge and an invalid batch publishes nothing.
//
// A message whose header frame, its properties and header table, does
// not fit in the connection's negotiated frame_max (RabbitMQ's default is
// 128 KiB; WithConfig's FrameSize asks for another) fails alone, without
// being sent, with message.ErrMessageTooLarge in the *message.PublishError;
// the rest of its batch is published. AMQP never splits that frame, and
// RabbitMQ closes the connection for one over frame_max (FRAME_ERROR).
//
// The broker's max_message_size (128 MiB on RabbitMQ 3.x, 16 MiB on 4.x)
// is not announced to clients. A payload over it makes RabbitMQ close the
// channel (PRECONDITION_FAILED, "message size N is larger than configured
// max size M"): that message fails with message.ErrMessageTooLarge,
// wrapping the broker's *amqp091.Error; the others of its batch are
// published again; and the Publisher then refuses payloads over M before
// sending anything. Set WithMaxPayload to the broker's limit to have
// every such payload refused up front.
//
// When the broker closes the connection with an error of its own (not a
// network failure, a heartbeat timeout or a shutdown) while messages were
// in flight, each of those messages is published again alone, with
// nothing else of the Publisher in flight, so that the broker's next
// refusal is attributable. A message that makes the broker close the
// connection three times in a row that way fails with
// ErrBrokerClosedConnection (and message.ErrInvalidMessage and the
// broker's *amqp091.Error) instead of being published forever. The other
// messages and Publish calls wait for those rounds, then go on as usual.
//
// A Publish whose ctx is already done publishes nothing and returns
// ctx.Err() (context.Canceled or context.DeadlineExceeded, unwrapped),
// also when a channel would have been free at once. A ctx that ends while
// the confirms are awaited also returns ctx.Err(): the messages were
// written and may or may not be stored.
//
// Subscribe consumes with manual acknowledgement and a Qos prefetch of
// max(128, 16×concurrency) (WithPrefetch) on each shard it owns.
// Deliveries of all its shards go to ferry's keyed dispatcher: up to
// WithConcurrency handlers at once, same-Key messages one at a time in
// queue order. A handler returning nil acks the delivery
// on the channel it came from, within 1 ms: acks are sent together, per
// channel one ack with multiple set for the settled deliveries contiguous
// with everything the channel acked before and single acks for the
// others, so that the broker does one ack's work for many messages (a
// delivery whose handler has not returned is never acknowledged; with a
// prefetch below 8 every ack goes at once). A handler error (or panic) redelivers the
// same message in-process after an exponential backoff
// (WithRedeliveryBackoff), with Delivery.Attempt one higher, blocking only
// its key; the message stays unacked meanwhile, which is why the prefetch
// leaves room for other keys to flow. Nothing is nacked or dropped; bound
// retries with the retry middleware.
//
// Delivery.Attempt starts at 1, at 2 when the broker flags the delivery as
// redelivered, or at x-delivery-count + 1 on quorum queues.
// Delivery.DeliveryTag and Delivery.Redelivered are the AMQP values;
// Partition is the shard's number (-1 with WithCompetingConsumers) and
// Offset is -1.
//
// On ctx cancellation Subscribe cancels its consumer, lets in-flight
// handlers finish (their context is cancelled only after WithDrainTimeout),
// acks those that succeeded, closes the channel (the broker requeues the
// rest) and returns nil. Close does the same for every Subscribe call,
// which then return message.ErrClosed.
//
// Delivery is at least once: messages unacked when a connection or channel
// is lost, or a process dies, are delivered again (redelivered flag set).
// Use the dedupe middleware for effectively-once processing.
//
// # Batches
//
// Subscriber.SubscribeBatch calls a message.BatchHandler with batches cut
// from the keyed dispatcher (package adapter/dispatch, "Batches"): up to
// the concurrency batches at once, no key in two of them, a key's
// messages in queue order; limits by message.WithBatchMaxMessages
// (default 256), WithBatchMaxBytes (1 MiB of bodies) and WithBatchMaxWait
// (10 ms). A batch holds at most the prefetch divided by the concurrency
// (the broker sends no more unacknowledged messages; raise WithPrefetch
// for larger batches). A *message.BatchError settles the messages it does
// not name, except the later messages of a failed message's key, which
// are redelivered with it in the process (not requeued). What a batch
// settled is acked at once: per channel, the deliveries contiguous with
// everything the channel acked before in one ack with multiple set, the
// others one by one (a channel whose oldest unacked delivery lags 65536
// tags behind, such as one holding an undecodable delivery, is acked one
// by one from then on).
//
// # Reconnection
//
// Each Publisher and Subscriber owns one connection, supervised by a
// goroutine: when it is lost (network failure, broker restart, a
// heartbeat timeout) ferry reconnects with exponential backoff and jitter
// (WithReconnectBackoff, default 100 ms to 10 s, forever until Close),
// reopens channels, redeclares the topology and resumes consuming. The
// client's own experimental recovery (amqp091.Config.Recovery) is not used
// and must be left nil.
//
// A cluster's nodes can be given together: WithAddresses adds URLs to the
// constructor's. The first connection takes the first that opens, and
// each reconnection attempt tries them all in turn, starting with the one
// after the node that was lost, so a Publisher or Subscriber whose node
// died moves to another node; with quorum queues (WithQuorumQueues) the
// messages survive a node while a majority of the queue's nodes run.
//
// Publish during an outage waits for the reconnection, bounded by its ctx.
// A message whose confirm was lost with the connection is published again
// on the new connection, transparently, until it is confirmed or ctx ends:
// nothing is silently lost, but such a message may be stored twice (same
// ID), which the dedupe middleware absorbs. If the broker closes a
// publishing channel while the connection stays up (for example after the
// exchange was deleted), ferry redeclares and retries up to three times,
// then reports the channel error for the affected messages.
//
// A subscriber whose channel is lost drops the deliveries of that channel
// that have not started running (the broker requeues them, as it does the
// ones still running), and consumes again on a new channel. Handlers that
// were running finish, but their acks are not sent: a delivery tag belongs
// to its channel, and acking it on the new one would ack another message.
// The broker redelivers them instead.
//
// Connection state changes (connected, disconnected, reconnecting with the
// failed attempt's error, closed) go to WithOnStateChange and, when set, to
// WithLogger. URLs in errors, logs and state changes have their password
// redacted, and client errors that echo the password are scrubbed.
//
// A URL that does not parse, or is not an amqp:// or amqps:// URL with a
// host part ("127.0.0.1:5672", "user:pass@host", "amqp:host", a bad
// percent-escape, a space or a control character, an unencoded '/', '?'
// or '#' in the password), fails the constructor with an error wrapping
// message.ErrInvalidConfig that says what is wrong and shows the shape of
// a valid URL (amqp://user:pass@host:5672/vhost), but never the URL or
// any part of it, nor an error that quotes it: in a URL that does not
// parse the password could be anywhere. Whatever the URL's shape, every
// candidate for its password (as written and percent-decoded) is scrubbed
// from every error text ferry returns, logs or reports.
//
// Every connection attempt, the constructor's and each reconnection, is
// bounded by WithDialTimeout (default 10 s, DefaultDialTimeout, or the
// URL's connection_timeout parameter): the TCP connect and the TLS and
// AMQP handshakes together. A broker port that accepts TCP and never
// answers thus fails the constructor after the timeout with an error that
// says "timed out ... (WithDialTimeout)", instead of blocking for the
// client's 30 s.
//
// # Undecodable deliveries
//
// RabbitMQ stores messages that amqp091-go cannot read: a header table
// nested deeper than the client's 32 levels (another client can publish
// one), or a header frame larger than the frame_max the subscriber
// negotiated (WithConfig's FrameSize below the publisher's). When the
// broker delivers such a message, the client fails to decode the frame
// and closes the whole connection; the broker puts the message back at
// the head of its queue and delivers it again as soon as consuming
// resumes. The queue does not move, and without a way out this goes on
// forever: no handler ever sees the message, so neither the handler nor
// the retry middleware can settle it.
//
// ferry recognises these losses by the client's decode error (a network
// failure never looks like one) and, for each of them in a row:
//
//   - reports StateDisconnected with an Err that matches
//     ErrUndecodableDelivery (errors.Is) and wraps the client's
//     *amqp091.Error, and says how many losses in a row it is;
//   - logs it at Error with WithLogger at the third loss in a row and at
//     every tenth after, saying what to do;
//   - keeps the reconnection backoff growing across the streak (up to
//     WithReconnectBackoff's maximum) instead of starting again at the
//     initial interval, so it does not reconnect ten times a second;
//   - consumes with prefetch 1 on the connections it opens during the
//     streak, so that the messages behind the undecodable one are not
//     delivered and returned with it on every loss; once such a
//     connection has held for a minute the consumers are opened again
//     (each shard released and claimed as when shards move, its running
//     handlers acked first) with their normal prefetch.
//
// Subscribe does not return: it goes on consuming the other shards (and
// the shard itself once the message is gone). The way out that keeps the
// rest of the queue flowing without anyone's intervention is the broker's
// delivery limit: quorum queues (WithQuorumQueues) with an
// x-delivery-limit (WithQueueArgs) and a dead-letter exchange
// (WithDeadLetterExchange):
//
//	amqp.WithOptions(amqp.WithQuorumQueues(),
//		amqp.WithQueueArgs(amqp091.Table{"x-delivery-limit": int64(5)}),
//		amqp.WithDeadLetterExchange("orders.dlx"))
//
// The broker counts every delivery that a lost connection returns, and
// after the limit dead-letters the message (on RabbitMQ 3.10 as on 4.x; a
// test proves it), after which the queue flows again. Choose a limit of
// at least 2: on the first loss the messages prefetched behind the
// undecodable one come back with it once. (Messages that a handler keeps
// failing do not count towards the limit: ferry redelivers those
// in-process and never returns them to the broker.) On classic queues
// there is no such limit: remove the message with the broker's tools
// (for example move the queue's head with a shovel, or purge it).
//
// # Configuration
//
// Options are typed by the side that uses them, so that an option given
// to the wrong constructor is a compile error rather than ignored:
// NewPublisher takes PublisherOptions, NewSubscriber SubscriberOptions,
// and an Option is both. Every option is validated by the constructor: a
// bad value fails it with an error wrapping message.ErrInvalidConfig that
// names the option ("amqp: ferry: invalid configuration: WithPrefetch(0):
// want 1..65535"); nothing is clamped. Nil options are skipped.
//
//	Option (both sides)     default
//	WithConfig              amqp091's defaults (10 s heartbeat, credentials and vhost from the URL)
//	WithReconnectBackoff    100 ms doubling to 10 s, with jitter
//	WithDialTimeout         10 s (DefaultDialTimeout), or the URL's connection_timeout
//	WithAddresses           none: only the constructor's URL
//	WithLogger              nil: no logging
//	WithObserver            none (message.Observer: events and queue depth)
//	WithOnStateChange       nil: none
//	WithKeyHeader           "ferry-key" (DefaultKeyHeader)
//	WithExchangeKind        ExchangeTopic
//	WithBindingKey          "#" on a topic exchange, "" otherwise
//	WithQueueName           topic + "." + group
//	WithQuorumQueues        classic queues
//	WithQueueArgs           none
//	WithDeadLetterExchange  none
//	WithShards              16 (DefaultShards)
//	WithCompetingConsumers  off: a sharded group
//	WithOptions             bundles Options into one
//
//	PublisherOption         default
//	WithRoutingKey          the message's Key
//	WithMaxPayload          16 MiB (DefaultMaxPayload)
//	WithPublishChannels     1
//
//	SubscriberOption        default
//	WithGroup               "default"
//	WithConcurrency         1
//	WithPrefetch            max(128, 16×concurrency), at most 65535
//	WithRedeliveryBackoff   100 ms doubling to 10 s
//	WithDrainTimeout        30 s
//	WithGroupHeartbeat      500 ms
//	WithLagInterval         5 s (DefaultLagInterval), with an observer
//
// The topology options are shared because Publisher.Declare declares a
// group's queues exactly as its Subscribers do: give the Publisher the
// same ones, for example as one WithOptions(...) value passed to both.
// WithConfig passes an amqp091.Config through for TLS, SASL, vhost,
// heartbeat, frame size, connection properties and the dialer. The
// constructors validate the options, then dial once and fail on an
// invalid URL or an unreachable broker; later losses are repaired in the
// background.
//
// # Logging
//
// WithLogger is the adapter's operational log, the same on every ferry
// adapter. ferry's events are logged in the one format of
// message.LogEvents (message "ferry: <event>", the same attribute names on
// every adapter): a lost connection and each failed reconnection attempt
// (Warn, with the cause), a restored connection (Info), each handler
// error (Debug, with system, topic, group, partition (the shard),
// delivery_tag, id, attempt and err) before the message is redelivered,
// each failed Publish (Debug). What only this adapter has is logged
// beside them: consumer and group member restarts (Warn), a shard count
// that differs between members (Error), connection losses to a delivery
// the client cannot decode, from the third in a row (Error, see
// Undecodable deliveries).
//
// WithObserver gives the same events to a message.Observer (such as
// otelferry's Telemetry), and the depth of each of the group's queues:
// their ready messages, from a passive queue.declare on a channel of its
// own every WithLagInterval, reported when it changed (EventLag, the
// shard as Partition, -1 for the one queue of competing consumers).
//
// # Errors
//
// Bad input fails before anything is sent: message.ErrInvalidTopic (empty,
// over 255 bytes, a character outside the allowed set, the "amq." prefix),
// message.ErrInvalidMessage (a nil message, an ID, header name or routing
// key over 255 bytes), message.ErrMessageTooLarge (a payload over
// WithMaxPayload, or over the broker's max_message_size once it refused
// one), message.ErrNilHandler, message.ErrInvalidConfig (bad options, a
// bad URL: what is wrong is said, the URL never shown, a declaration the
// broker refuses). A constructor whose broker does not complete the
// connection within WithDialTimeout fails with an error saying it timed
// out. Per-message publish failures come in a
// *message.PublishError: message.ErrUnroutable (returned by the broker),
// ErrNacked (refused by the broker), message.ErrMessageTooLarge (a header
// frame over frame_max, or a payload over the broker's max_message_size),
// ErrBrokerClosedConnection (a message the broker closes the connection
// for, every time), or the channel error. Broker errors
// wrap *amqp091.Error, so errors.As finds the AMQP reply code. After Close,
// Publish, Declare and Subscribe return message.ErrClosed. Context errors
// are returned unwrapped; a Publish whose ctx is already done returns its
// error and publishes nothing. A connection lost to a delivery the client
// cannot decode is reported, not returned: StateChange.Err (and the log)
// matches ErrUndecodableDelivery (see Undecodable deliveries). No error,
// log line or state change holds a broker URL's password, whatever the
// URL's shape.
package amqp
