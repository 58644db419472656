// Command ferry is the operator's tool for ferry's brokers: it watches
// topics and repairs dead letters on Kafka and RabbitMQ, through the same
// broker URLs as the library's connect package.
//
// Install:
//
//	go install github.com/ferrymsg/ferry/cmd/ferry@latest
//
// Commands (each has --help with examples):
//
//	ferry tail <url> <topic> [--from earliest|latest|-N|<RFC3339>] [--key K] [--grep RE] [--max N] [--json]
//	ferry publish <url> <topic> [--key K] [--header k=v]... [--file F | stdin] [--raw] [--json]
//	ferry dlt ls <url> <dlt-topic> [--by error|topic|group] [--all] [--json]
//	ferry dlt show <url> <dlt-topic> <id> [--json]
//	ferry dlt replay <url> <dlt-topic> [--filter error=RE|key=K|id=ID|topic=T|group=G|since=T]... [--limit N] [--dry-run] [--to topic] [--rate R] [--batch B]
//	ferry dlt purge <url> <dlt-topic> [--filter ...]... [--limit N] [--yes]
//	ferry lag <url> <group> [<topic>]
//	ferry topics <url>
//	ferry topics create <url> <topic> [--partitions N] [--replication R]
//
// On RabbitMQ the dlt commands read the queues of one group of the DLT,
// --group (default "default").
//
// # Output and exit codes
//
// Tables for people by default, --json for scripts (one JSON object per
// line). Errors are one line on stderr starting with "ferry: ". URLs are
// printed with their password replaced by "xxxxx"; no credential is ever
// printed. Exit codes: 0 success (tail: stopped by Ctrl-C or --max), 1
// error (bad URL, broker down, unknown topic or group, failed or
// interrupted replay), 2 usage (unknown command or flag, wrong
// arguments).
//
// # Tail moves nothing
//
// On Kafka, tail consumes the partitions directly, in no consumer group,
// and commits nothing. On RabbitMQ it binds a server-named, exclusive,
// auto-delete queue of its own to the topic's exchange; the group
// queues are not touched, and the broker deletes the queue when tail's
// connection ends.
//
// # Dead letters
//
// The dead-letter headers are read with retry.ParseDeadLetter: ferry's
// ferry-dlt-* headers and Spring Kafka's kafka_dlt-* headers (the binary
// partition, offset and timestamp shown as numbers). replay republishes
// with the same ID, key, payload, time and headers, minus the
// dead-letter ones (retry.StripHeaders), as retry.Replay does.
//
// It does not call retry.Replay, because what "settling" a dead letter
// means has to fit a filtered replay on each broker: retry.Replay settles
// the messages its filter skips (right for a subscriber group, which
// must move past them), which on RabbitMQ would delete every dead letter
// the filter did not match. Instead:
//
//   - Kafka: a DLT is a log, and a group's committed offset can only say
//     "everything before here", which a filtered replay or purge cannot
//     use. ferry records each settled dead letter (key
//     "<partition>@<offset>", the action, the ID, the time) in a
//     companion topic, <dlt>.ferry-settled (compacted, created at the first
//     replay or purge), and skips the recorded ones. No group's offsets
//     on the DLT are read or moved. Purged records stay in the log until
//     its retention removes them (ls --all shows them).
//   - RabbitMQ: the dead letters are the messages in the group's queues;
//     they are taken with basic.get without acknowledgement; the ones
//     replayed or purged are acknowledged (removed), all others are given
//     back, in their order, when the command ends (nack with requeue,
//     then channel close). The broker flags given-back messages
//     redelivered; a quorum queue counts it as a delivery.
//
// # Interrupting a replay
//
// replay handles dead letters in batches (--batch, default 100): it
// publishes a batch, waits until the broker acknowledged every message of
// it, and only then settles the batch (Kafka: writes the ledger records
// and waits for their acknowledgement; RabbitMQ: acks). Ctrl-C stops at
// once; a settle already under way is finished first. A rerun of the
// same command skips what was settled and replays the rest, so every
// matching dead letter is replayed, and at most one batch twice: the one
// whose republish was acknowledged (or half done when the interrupt came)
// but not yet settled. Those copies keep their message IDs, so a
// consumer with the dedupe middleware drops them. A kill -9 or a crash
// has the same bound.
//
// # Module
//
// cmd/ferry is a module of its own, github.com/ferrymsg/ferry/cmd/ferry,
// so that cobra and progressbar stay out of the library's go.mod. Its
// go.mod requires the library by version and has no replace directive (go
// install pkg@version refuses a module whose go.mod has one); local
// development and CI build it against the repository's library through
// cmd/ferry/go.work (a replace there), which go install ignores. A
// release tags the library (vX.Y.Z) and then the CLI (cmd/ferry/vX.Y.Z)
// with cmd/ferry/go.mod requiring that library version.
package main
