// Package adapter is ferry's kit for writing adapters: what a broker
// adapter needs to keep ferry's contract, and what application code never
// calls. Users of ferry import message and an adapter; adapter authors
// import this kit as well. It is exported so that an adapter written
// outside this module (NATS, Redis Streams, SQS, ...) keeps the same
// guarantees by importing ferry instead of copying it.
// adapter/kittest/chanadapter is such an adapter, in a module of its own
// (so Go forbids it ferry's internal/ packages): a partitioned in-process
// log with consumer groups, under 400 lines of code on this kit, passing
// message/messagetest.Run and the retry and dedupe middleware suites.
//
// This package holds the small pieces every adapter calls:
//
//   - Prepare: the check and completion of a Publish call (topic not
//     empty, no nil message, IDs and times filled in);
//   - Call: runs a handler, turning a panic into a *message.PanicError
//     (middleware such as retry and dedupe use it too);
//   - ValidateTopic (not empty) and ValidateLogTopic (Kafka's topic-name
//     rules, which inmem applies too);
//   - Lifecycle: a subscriber's closed flag, its running Subscribe calls
//     and a Close that cancels them (through context.AfterFunc, no
//     goroutine per call) and waits for them;
//   - SubscriberConfig: the group, concurrency, max pending, redelivery
//     backoff and drain timeout every adapter takes, with their Default*
//     values and one validation;
//   - NewBackoff: the one exponential backoff policy (cenkalti/backoff/v4)
//     of the redelivery, the retry middleware and reconnection loops;
//   - WithPartition and PartitionFrom: a publish asking for an explicit
//     partition (the retry middleware's Spring profile uses it).
//
// Its subpackages:
//
//   - adapter/dispatch: the keyed, ordered dispatcher (up to N handlers at
//     once, one message of a key at a time and in order, redelivery
//     backoff, graceful shutdown) and its scopes: Drain revokes a
//     partition, waiting for its running handlers and cancelling their
//     context after the drain timeout;
//   - adapter/offsets: commit-point tracking (contiguous commits: a
//     partition's commit point only moves past settled positions), for
//     logs with consecutive offsets (Tracker) and for logs with gaps,
//     fetched in batches (Log).
//
// An adapter proves it keeps the contract by passing
// message/messagetest.Run against its real broker.
package adapter
