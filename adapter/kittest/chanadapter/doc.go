// Package chanadapter is a small ferry adapter written the way an adapter
// outside the ferry module would be: in a module of its own, on nothing
// but ferry's exported packages (message, the adapter kit adapter,
// adapter/dispatch and adapter/offsets). Go forbids it ferry's internal/
// packages, so it proves that the kit is enough to keep ferry's contract:
// it passes message/messagetest.Run and the retry and dedupe middleware
// suites (retry/retrytest, dedupe/dedupetest).
//
// The broker is an in-process log, guarded by one mutex: each topic has a
// fixed number of partitions (a key's FNV-1a hash picks one; keyless
// messages go round robin), and each consumer group a commit point per
// partition (offsets.Tracker) and an owner per partition (partition i to
// member i mod M, as a Kafka range assignment would, recomputed when a
// member joins or leaves). It is meant to be read, not used: inmem is
// ferry's in-memory adapter.
//
// What comes from the kit, and what is left to write:
//
//   - Publish: adapter.ValidateLogTopic (Kafka's topic rules) and
//     adapter.Prepare (nil messages, IDs, times); appending is the
//     adapter's own.
//   - Subscribe: adapter.Lifecycle (Close cancels the running calls),
//     adapter.SubscriberConfig (group, concurrency, backoff, drain timeout,
//     validated), dispatch.Dispatcher built by dispatch.ConfigFor (keyed
//     order, concurrency, redelivery backoff, backpressure, graceful
//     shutdown, panics recovered through adapter.Call), one dispatch.Scope
//     per partition assignment and Dispatcher.Drain to revoke it,
//     message.SignalReady once the member has joined its group. Fetching
//     from the log, settling into the tracker and the group assignment are
//     the adapter's own (under 400 lines of code in all).
//
// # Delivery semantics
//
// As every ferry adapter: at least once; a handler's nil settles the
// message for its group, an error or a panic redelivers it after the
// backoff before any later message of its key; messages of one key are
// handled in order and never concurrently, also across the members of a
// group while they join and leave (a revoked partition is handed on only
// once its running handlers returned; their context is cancelled after
// the drain timeout). A new group reads the topic from its first message:
// the log keeps everything for the Broker's lifetime.
//
// # Errors
//
// Publish and Subscribe return errors wrapping the message sentinels:
// ErrInvalidTopic, ErrInvalidMessage, ErrNilHandler, ErrClosed (after
// Close of the publisher, subscriber or broker). NewSubscriber fails with
// message.ErrInvalidConfig for a bad configuration.
//
// # Configuration
//
// NewBroker takes the partition count (default DefaultPartitions, 4);
// NewSubscriber an adapter.SubscriberConfig, whose zero fields take the
// kit's defaults (adapter.SubscriberConfig.Fill).
package chanadapter
