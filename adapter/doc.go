// Package adapter is ferry's kit for writing adapters: what a broker
// adapter needs to keep ferry's contract and what application code never
// calls. It is exported so that an adapter written outside this module
// (NATS, Redis Streams, SQS, ...) keeps the same guarantees by importing
// ferry instead of copying it.
//
//   - adapter/dispatch: the keyed, ordered dispatcher (up to N handlers at
//     once, one message of a key at a time and in order, redelivery
//     backoff, removal of revoked partitions, graceful shutdown);
//   - adapter/offsets: commit-point tracking for logs with offsets
//     (contiguous commits: a partition's commit point only moves past
//     settled offsets).
//
// An adapter proves it keeps the contract by passing
// message/messagetest.Run against its real broker.
package adapter
