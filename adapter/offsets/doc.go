// Package offsets tracks which positions of a partition are settled, so an
// adapter commits only a contiguous settled prefix: settlements arrive out
// of order across keys, and a commit must never skip an unsettled
// position.
//
// Two trackers, for two kinds of log:
//
//   - Tracker, for logs whose offsets are consecutive numbers (an
//     in-memory log, an adapter's own numbering): Settle takes the offset,
//     Next is the commit point. inmem uses it.
//   - Log, for logs whose positions have gaps (Kafka: compaction,
//     transaction markers) and are fetched in batches: the adapter appends
//     each fetched batch as a Run of its own records and settles a record
//     by its run and index, at a cost independent of the gaps and of how
//     far behind the commit point is; Last is the last record of the
//     settled prefix. kafka uses it.
//
// Neither is safe for concurrent use: the adapter holds its partition's
// lock around them.
package offsets
