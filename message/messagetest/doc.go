// Package messagetest is the conformance suite every ferry adapter runs, like
// net/http/httptest or testing/fstest: an adapter's conformance_test.go
// builds a Harness (how to make publishers and subscribers, what the adapter
// can do) and calls Run. Run holds the adapter contract only, and the
// package imports nothing of ferry but package message. The middleware
// suites take the same Harness and live with their middleware: package
// retry/retrytest (retrytest.Run: retries, dead-lettering, replay) and
// package dedupe/dedupetest (dedupetest.RunMiddleware: the idempotent
// consumer). An adapter calls all three:
//
//	func TestConformance(t *testing.T) {
//		h := messagetest.Harness{
//			NewPublisher:  func(t testing.TB) (message.Publisher, error) { ... },
//			NewSubscriber: func(t testing.TB, cfg messagetest.SubscriberConfig) (message.Subscriber, error) { ... },
//			Features:      messagetest.Features{NewGroupReadsHistory: true},
//		}
//		messagetest.Run(t, h)
//		t.Run("retry and dead-lettering", func(t *testing.T) { retrytest.Run(t, h) })
//		t.Run("dedupe", func(t *testing.T) { dedupetest.RunMiddleware(t, h) })
//	}
//
// # Tests
//
// Run runs these subtests, one after another, named as listed:
//
//   - round trip keeps ID, key, payload, headers and time: an empty payload,
//     every byte value plus invalid UTF-8, a payload of Features.MaxPayload
//     (default 1 MiB), unicode keys, header keys and values, an empty header
//     value and an explicit Time come back unchanged (Time compared in
//     milliseconds, which brokers keep); Delivery.Topic, Delivery.Group and
//     Delivery.Attempt (1) are set.
//   - publish fills in an empty ID and time: Publish writes a fresh ID and
//     the publish time into the caller's messages, and they are delivered.
//   - batch publish of 1000 messages arrives complete: one Publish call, each
//     message handled exactly once.
//   - concurrent publishes from 20 goroutines arrive complete without
//     duplicates: 20 × 500 single-message Publish calls.
//   - topics are isolated: two topics, the same group name and keys; each
//     subscriber gets exactly its topic's messages.
//   - two groups each receive every message.
//   - subscribers of one group split the messages without overlap: two
//     members start, rounds of messages are published until both have
//     handled some (the warm-up, while the group forms; every message must
//     arrive, and a message handled by both members during it is tolerated
//     and logged as at-least-once across a rebalance); then a steady-state
//     batch of 200 must be handled once each, by one member, and both
//     members get some.
//   - same-key messages are handled in order and never concurrently, up to
//     the concurrency limit: 16 keys × 200 messages at concurrency 8 with
//     random handler delays; each key in publish order, exactly once, never
//     two of a key at once; the most handlers seen running at once is more
//     than 1 and at most 8.
//   - a handler may keep a delivered message: the handler keeps the
//     delivered pointers of two batches of 300 (7 keys, two headers each);
//     after both were handled, every kept message still has the ID, key,
//     payload and headers it was published with.
//   - members of one group keep per-key order and never overlap a key:
//     three members (concurrency 8 each) start; warm-up rounds of messages
//     with keys of their own are published until every member has handled
//     one; then 32 keys × 100 messages, handlers taking 0 to 2 ms at random.
//     Every message is handled; each key's messages are first handled in
//     publish order across all members; no two calls of a key run at once,
//     on one member or on two; at least two members handle some. Repeated
//     calls (redeliveries) are logged.
//   - per-key order holds while members join, leave and crash: 16 keys are
//     published continuously (at most 600 messages unhandled) while the
//     group changes, each step triggered by progress, not by time: member
//     1 starts; members 2 and 3 join (each step waits until the new member
//     handled 50 messages); member 1 leaves (context cancelled, Subscribe
//     must return nil); member 2 crashes while one of its handlers runs
//     (Harness.Kill, see below); member 4 joins; member 5 joins and
//     leaves again at once. Nothing is lost; no message is first handled
//     before an earlier one of its key; no two calls of a key run at once
//     on live members. Redeliveries of messages handled before are allowed
//     and logged, counted per step.
//   - handler error redelivers with growing attempt before later same-key
//     messages: a failing message comes back as the same message with
//     Delivery.Attempt 2, 3, ... before the next message of its key; other
//     keys are not held up; nothing is lost or handled twice.
//   - handler panic is treated as an error and the subscriber keeps running.
//   - resumed subscriber does not get settled messages again: a new
//     subscriber in the same group continues after what the previous one
//     settled.
//   - new group reads from the start (Features.NewGroupReadsHistory): a
//     group created after every message was settled by another group still
//     receives them all.
//   - subscribe signals ready once it consumes, and a message published
//     right after arrives (message.WithReady): Subscribe with an empty
//     topic and Subscribe on a closed subscriber never call the ready
//     function; a running Subscribe on a fresh topic and group calls it
//     exactly once; 20 messages published as soon as it fired, with no
//     warm-up and no Harness.Prepare (called only when the test ends, for
//     clean-up, so the topology must come from Subscribe), are all
//     handled; a second member joining the group is ready too (even with
//     no partition or shard of its own), and 20 more messages published
//     then are all handled by one of the two.
//   - graceful shutdown lets in-flight handlers finish and settles them:
//     cancelling Subscribe while handlers run lets them finish with a live
//     context, Subscribe returns nil only after they finished, and a
//     resumed subscriber in the same group gets exactly the others, so each
//     message is handled exactly once in total.
//   - cancelling an idle subscribe returns nil.
//   - close is idempotent: Close twice on a publisher and a subscriber
//     returns nil both times.
//   - publish and subscribe after close return ErrClosed.
//   - close unblocks a running subscribe with ErrClosed.
//   - bad input is rejected and publishes nothing: an empty topic
//     (ErrInvalidTopic from Publish and Subscribe); a nil message in a batch
//     (ErrInvalidMessage, and the batch's valid messages are not published);
//     a nil handler (ErrNilHandler); each of Features.InvalidTopics
//     (ErrInvalidTopic from Publish and Subscribe, with an error that names
//     the topic when it is at most 100 bytes).
//   - no goroutines are left after close: goleak.VerifyNone after a
//     publish, consume and redelivery cycle and Close of both ends, ignoring
//     the goroutines that ran when the subtest began.
//   - broker restart during publish and consume loses nothing
//     (Features.Restart): messages are published one at a time, retrying
//     failed calls, while RestartBroker runs; every message whose Publish
//     returned nil is handled at least once.
//
// Then the batch handler tests (message.BatchSubscriber; not run with
// Features.NoBatch, and the three that check per-key order not with
// Features.NoKeyOrder either):
//
//   - batch: round trip keeps ID, key, payload and headers, each message
//     once: 60 messages of 6 keys at concurrency 2; no empty batch,
//     Delivery.Topic set and Attempt 1.
//   - batch: batches never pass the count and byte limits, and a lone
//     message is handed over: 150 messages of 0 to 59 bytes with limits of
//     7 messages and 200 bytes (a larger single message excepted), then one
//     message on its own must arrive without more being published (the
//     wait limit; no wall time is asserted).
//   - batch: per-key order across batches at concurrency 8 with random
//     partial failures: 16 keys × 60 messages, one in 10 failing by index
//     and one batch in 20 failing whole (while Attempt < 4); each key's
//     messages in a batch are consecutive from its first one not settled
//     (those before the key's first failure in every earlier batch
//     settled), no key in two running batches, each message settled once.
//   - batch: each message settles exactly once, and a new member gets none
//     again: 8 keys × 25 with failures as above, then a graceful stop and a
//     new member of the group, which must get only a marker published now.
//   - batch: a failed message holds its partition's commit point until it
//     settles: message #10 of one key always fails; after a graceful stop
//     the next member gets #10 to #29 in order and nothing before (Kafka:
//     the commit never passed #10).
//   - batch: graceful shutdown mid-batch settles the running batch and
//     hands on the rest: the shutdown begins while a batch runs; the batch
//     settles, Subscribe returns nil, the next member gets what was not
//     settled and nothing that was.
//   - batch: a member joining mid-batch (rebalance) loses nothing: a second
//     member joins while the first member's batch runs (the batch waits for
//     its ready signal); every message is handled by one or the other.
//
// Tests needing a capability the adapter lacks are not run; Run logs their
// names and the missing Features field. With Features.NoKeyOrder (a Kafka
// share group) the three per-key order tests are not run, and the
// redelivery tests (handler error, panic, leaks) check each message's
// attempts in growing order without their order among the key's other
// messages.
//
// # What the suite assumes of a harness
//
// The suite calls Harness.Prepare (when set) with each fresh topic and the
// groups that will consume it before publishing, so an adapter whose queues
// only receive what is published after they exist (AMQP) gets them in time,
// except in "subscribe signals ready once it consumes", which relies on
// Subscribe having declared them when the ready function is called.
// It relies on history only in "new group reads from the start".
//
// Topics come from Harness.NewTopic, or are named ferry-<test>-<random> from
// letters, digits, '.', '_' and '-' (at most 100 bytes). Groups are named
// likewise and are fresh in every test.
//
// Subscribers get SubscriberConfig with a redelivery backoff of 1 ms to
// 20 ms and a drain timeout equal to Features.Timeout, so redelivery tests
// run fast and shutdown never cancels a handler early.
//
// Every wait ends after Features.Timeout (default 30 s) with a failure that
// says what was expected and what was seen; a Subscribe that returns while
// a test waits fails the test at once with its error. Publishers and
// subscribers are closed when each test ends.
//
// A crash is Harness.Kill when set: the suite first marks the member dead
// (its handler records nothing and fails at once from then on, and its
// calls still running are no longer counted, as a crashed process's
// handlers do not run on), then calls Kill, then closes the subscriber.
// Without Kill the crash is that gate plus Close: the adapter's graceful
// shutdown then runs, so redelivery after a real crash is not exercised.
// KillSwitch is a dialer wrapper for writing Kill: a harness gives each
// subscriber's client a switch's dialer and passes KillSwitches.Kill as
// Harness.Kill; killing closes every connection of that client at once and
// refuses new ones, without starting goroutines.
//
// The goroutine-leak test ignores goroutines running when it starts, so a
// harness may share a broker or cluster across tests; a harness must not
// start goroutines lazily in NewPublisher or NewSubscriber that outlive
// Close.
//
// Received headers whose keys start with "ferry-" (reserved by ferry) are
// ignored when comparing a round trip, so adapters may carry ID, Key or Time
// in such headers.
//
// # Writing a suite on a Harness
//
// Suites for what sits on top of an adapter (middleware, batches, an
// outbox relay) take a Harness too, so that they run on every adapter
// that passes Run, and build their tests with the kit Run itself uses:
// NewEnv gives each test an Env (fresh topics and groups, Prepare,
// publishers and subscribers closed when the test ends, Subscribe watched
// in the background, Eventually bounded by Features.Timeout and failing
// with what was expected and what was seen); a Collector records handler
// calls by ID and waits for them. A suite built on the kit makes the same
// assumptions of a harness as Run (above). See the example; packages
// retry/retrytest and dedupe/dedupetest are written this way. Give such a
// suite a test of its own that proves it can fail on a broken adapter, as
// this package's mutants_test.go does for Run.
package messagetest
