// Package kafka is ferry's Kafka adapter, built on franz-go
// (github.com/twmb/franz-go/pkg/kgo).
//
//	pub, err := kafka.NewPublisher([]string{"127.0.0.1:9092"})
//	sub, err := kafka.NewSubscriber([]string{"127.0.0.1:9092"}, kafka.WithGroup("billing"), kafka.WithConcurrency(8))
//	err = sub.Subscribe(ctx, "orders", handler) // blocks until ctx is cancelled
//
// # Records
//
// A message maps to a record that any Kafka client can read:
//
//   - Key is the record key (no key when empty). franz-go's default
//     partitioner hashes keys with murmur2 like the Java client, so a key
//     lands on the same partition whichever client produced it.
//   - Payload is the record value.
//   - Time is the record timestamp (CreateTime, millisecond precision). On a
//     topic with message.timestamp.type=LogAppendTime the broker replaces it
//     with the append time.
//   - ID is the "ferry-id" record header (HeaderID), UTF-8.
//   - Headers are record headers, the values' bytes as they are. A user
//     header named "ferry-id" is replaced by ID.
//
// A delivered record becomes a message the same way back. A record without
// a "ferry-id" header (from a non-ferry producer), or whose ferry-id is
// empty, gets the ID "<topic>-<partition>-<offset>", which is stable
// across redeliveries, so the dedupe middleware still works.
//
// Record headers are a list, Headers a map: a header name that appears
// more than once (other clients may write that; ferry does not) keeps its
// last value, the one Kafka's Java Headers.lastHeader returns, and the
// earlier values are dropped. That holds for "ferry-id" as well: the last
// one is the ID, and "ferry-id" is never in Headers. Header values are the
// record's bytes as they are, not checked for UTF-8 (a binary value is a
// string of those bytes, a null value ""), and publishing the message
// again writes the same bytes.
//
// Delivery carries Topic, Group, Partition, Offset and Attempt, and
// LogAppendTime when the record's timestamp is the broker's append time
// (a topic with message.timestamp.type=LogAppendTime: Time is then that
// time); Redelivered is always false (Kafka does not say whether a record
// was delivered before).
//
// Publish honours adapter.WithPartition(ctx, p): every record of the call
// goes to partition p when the topic has more than p partitions, and is
// partitioned by key as usual otherwise, as Spring Kafka's
// DeadLetterPublishingRecoverer falls back when its destination
// partition does not exist. The retry middleware's Spring profile uses it
// to dead-letter a record to the same partition number of the DLT, like
// Spring's default destination resolver. It wraps the producer's
// partitioner (franz-go's default, or one given with
// kgo.RecordPartitioner through WithClientOptions), which still places
// every other record.
//
// # Delivery semantics
//
// At least once. Subscribe joins a consumer group (cooperative-sticky
// balancer) with its own franz-go client, fetches the assigned partitions
// and hands records to ferry's keyed dispatcher: up to WithConcurrency
// handlers run at once; records with the same key run one at a time in
// offset order, redeliveries included; different keys run in parallel, also
// within a partition.
//
// A handler's nil return settles the record. Offsets are committed only up
// to the longest contiguous run of settled records per partition: a
// record that is still running, failing or waiting for redelivery holds
// back its partition's commit point (not its partition's other keys). The
// commit point is committed every WithCommitInterval, when partitions are
// revoked, and on shutdown, with the settled offsets above it in the
// commit's metadata (see "What is replayed").
//
// A handler error or panic redelivers the same record in-process after the
// redelivery backoff, with Attempt + 1, before any later record of its key.
// Nothing is dropped; bound retries with the retry middleware.
//
// Rebalances: when partitions are revoked, ferry stops handing their
// records to handlers, drops the ones queued, lets their running handlers
// finish with a live context for up to the drain timeout, then cancels
// those handlers' context (only theirs: the other partitions' handlers go
// on) and waits for them to return. It then commits the partitions'
// settled prefix synchronously and only then lets them go, so a key never
// runs on two members at once. The new owner starts at that commit point,
// so records that were queued, failing or cancelled are delivered again
// there (at least once). A handler that ignores its cancelled context
// holds up the rebalance until it returns; past the group's rebalance
// timeout the broker removes the member. When partitions are lost
// (session expired, fenced), nothing of them is committed: the offsets are
// no longer ours; their queued records are dropped and their running
// handlers' context is cancelled after the drain timeout, without waiting. Rebalances wait until the records of the current poll
// are handed to the dispatcher (kgo.BlockRebalanceOnPoll), so records
// fetched under one assignment are never counted against the next one; a
// poll blocked by backpressure therefore also holds back a rebalance until
// handlers make room. Commits use franz-go's group generation, so none lands
// across a rebalance for a partition this member no longer owns.
//
// Backpressure: at most WithMaxPending records per Subscribe call are
// fetched and not yet settled. Beyond that ferry stops polling, and
// franz-go stops fetching once its per-broker buffer is full, so memory
// stays bounded with a slow handler.
//
// Shutdown: when ctx is cancelled (or Close is called) Subscribe stops
// fetching, lets running handlers finish with a live context for up to the
// drain timeout (then cancels it), commits every settled prefix, leaves the
// group and returns nil (ErrClosed after Close). A restart in the same
// group continues after what was settled.
//
// Publish returns when every record is acknowledged by all in-sync replicas
// (acks=all, idempotent producer). Concurrent Publish calls share franz-go's
// batches (it lingers 10ms by default; kgo.ProducerLinger changes that).
// A batch is not atomic: records go to different partitions. An already
// cancelled ctx publishes nothing and returns context.Canceled. A Publish
// whose ctx has no deadline is bounded by WithDeliveryTimeout (default
// DefaultDeliveryTimeout, 30 s): a broker that accepts connections and
// never answers fails it with an error naming WithDeliveryTimeout that
// matches context.DeadlineExceeded (without the bound franz-go gives up
// on the topic look-up after about 40 s, and retries records forever).
// Pass a ctx with a deadline to choose per call. Publish keeps to its ctx
// during a leader election too: records still in flight when it ends are
// failed, not waited for (kgo.AllowIdempotentProduceCancellation), and a
// record waiting for a new leader looks again within a second
// (kgo.MetadataMinAge 1 s), so a Publish returns about a second after its
// deadline at most (plus up to a second to name NOT_ENOUGH_REPLICAS or a
// missing leader). The price: a message whose Publish failed may have been
// written all the same (as after any error: retry it, and a consumer that
// must not see it twice dedupes by its ID). WithClientOptions can change
// kgo.MetadataMinAge.
//
// Seed brokers are "host:port": an empty entry (what
// strings.Split(os.Getenv("BROKERS"), ",") gives for an unset variable),
// a missing or bad port, an empty host or white space fails the
// constructor with message.ErrInvalidConfig naming the address, instead
// of franz-go's silent default of 127.0.0.1:9092.
//
// Subscribe calls message.WithReady's function at the first partition
// assignment of the Subscribe call (franz-go's OnPartitionsAssigned, which
// it calls after every join even when nothing is assigned), after the
// topic was created if missing: the member joined the group and holds its
// first assignment, which is empty when the group already has as many
// members as the topic has partitions. The group exists then; a new group
// starts at the earliest offset (WithStartOffset(StartEarliest), the
// default), so a record published after ready is delivered to the group.
// With StartLatest the start offset is looked up just after the
// assignment, so a record published in between may be skipped.
//
// # Batches
//
// Subscriber.SubscribeBatch calls a message.BatchHandler with batches cut
// from the keyed dispatcher (package adapter/dispatch, "Batches"), like
// Spring Kafka's batch listener but per key: up to the concurrency
// batches at once, no key in two of them, a key's records in partition
// order; a batch may hold records of several partitions. Limits by
// message.WithBatchMaxMessages (default 256), WithBatchMaxBytes (1 MiB of
// values) and WithBatchMaxWait (10 ms). A *message.BatchError settles
// the records it does not name, except the later records of a failed
// record's key, which are redelivered with it (Spring's
// BatchListenerFailedException commits the prefix and seeks back the
// whole rest instead). Commits stay contiguous: a partition's commit
// point never passes a record that has not settled, so a failed record
// holds its partition's commits (not the other partitions') until its
// redelivery settles, and a restart or rebalance resumes at it. A
// rebalance drains a revoked partition's batches as it drains handlers.
// Share mode (WithShareGroup) has no batch handlers: SubscribeBatch fails
// with message.ErrInvalidConfig.
//
// # Crash recovery
//
// A member that stops without leaving the group (a killed process, a lost
// network) keeps its partitions until its session times out: nothing of
// them is fetched in between. Subscribers set a session timeout of
// DefaultSessionTimeout (10 s, franz-go's own default is 45 s) with
// heartbeats every DefaultHeartbeatInterval (1 s), so a group resumes
// about 10 s after a crash instead of 45 s. Measured on Kafka 4.4 (a
// member's connections cut and refused, as by SIGKILL, then a new member
// started; TestCrashResumeTime): 9.9 s with the defaults, 45.8 s with
// kgo.SessionTimeout(45*time.Second), 0.5 s with static membership. A
// graceful shutdown (cancel or Close) leaves the group at once and is not
// affected. Change the timeout with
// WithClientOptions(kgo.SessionTimeout(d), kgo.HeartbeatInterval(d/10)),
// within the broker's group.min.session.timeout.ms (6 s) and
// group.max.session.timeout.ms (30 min): lower detects crashes sooner,
// but a process paused longer than the timeout (a GC pause, a stalled VM)
// loses its partitions and its uncommitted work is redelivered.
//
// Static membership, WithClientOptions(kgo.InstanceID(id)) with an ID
// that is stable across restarts and unique in the group (a StatefulSet
// pod name), makes a restarted member take its partitions back at its
// join, without waiting for the session timeout and without a rebalance.
// It is not the default because ferry cannot choose such an ID, and
// because a static member does not leave the group when it stops: its
// partitions wait for its return or the session timeout, also after a
// graceful shutdown. Kafka 4's consumer group protocol (KIP-848,
// kgo.ServerSideBalancer) is not used: franz-go speaks it only with the
// range or sticky balancer, not ferry's cooperative-sticky one, and there
// the session timeout is the broker's group.consumer.session.timeout.ms
// (45 s by default), which a client cannot lower.
//
// # What is replayed
//
// After a crash (the member killed, or cut off until its session timed
// out) the partition's next owner starts at the last commit; after a
// rebalance or a graceful shutdown, at the commit made when the
// partition was revoked. Each commit carries, in the offset commit's
// metadata string, the settled offsets above the commit point (a
// versioned "ferry1:" run-length encoding, offsets.EncodeSettled), and
// the next owner, reading it back at its assignment, settles those
// records without handing them to the handler. What is delivered again
// is then:
//
//   - after a rebalance or shutdown: only the records that were not
//     settled (running past the drain timeout, failing, waiting for
//     their redelivery, queued);
//   - after a crash: those, and the records settled since the last
//     commit: at most one WithCommitInterval of the member's throughput
//     (about half of it on average).
//
// Without the metadata (ferry before this, or another client of the
// group), everything above the commit point is delivered again: the
// unsettled records and every record behind the first of them, settled
// or not. Measured (TestReplayAfterCrash, TestReplayAfterRebalance; one
// partition, one key failing at its head while 10,000 later records of
// other keys settle): without the metadata the next owner is handed all
// 10,001 records (kfake), with it 1 (kfake and Kafka 4.4), after a crash
// (SIGKILL-like: every connection cut) and after a rebalance alike; the
// same 1 with the first owner in another process, SIGKILLed or stopped
// with SIGTERM, and the next owner a new process
// (TestReplayChildProcessBroker).
// Without a stuck head the metadata changes little: in the reliability
// suite's SIGKILL test (1,500 records, 3 kills, no failing record) the
// restarted children were handed 1,113 records again before and 1,046
// with it, one run each: the records settled in the second before each
// kill.
//
// The metadata takes at most 4,000 bytes per partition, under the
// broker's offset.metadata.max.bytes (4096 by default): about 2 bytes per
// settled run and gap, so about 1,500 separate gaps (unsettled records
// between settled ones) fit. When more do not, the commit carries the
// first runs that fit and the rest is replayed as without the metadata,
// never skipped; the subscriber reports it once, an EventCommitFailed
// whose error says the settled offsets do not all fit (logged with
// WithLogger). A broker with a lower limit refuses the metadata
// (OFFSET_METADATA_TOO_LARGE): that partition is committed again
// without it, reported the same way, and without it from then on. A
// commit with no settled record above its point carries no metadata.
// Metadata ferry did not write (a Java consumer's, franz-go's member ID)
// or written for another offset (the group's offsets reset by a tool) is
// ignored: the partition is replayed from its committed offset. A
// consumer that does not understand the metadata replays, as before.
// SubscribeBatch commits and skips the same way.
//
// The commit interval: a commit is one OffsetCommit request per member
// per WithCommitInterval (only when something changed), one record per
// changed partition in __consumer_offsets, each with up to 4,000 bytes of
// metadata while records above the commit point are settled. The replay
// after a crash is about one interval of the member's throughput. Measured
// with the reliability suite's SIGKILL test (1,500 records, 3 kills, one
// run each): 1,046 records replayed at 1 s (about 350 per kill), 211 at
// 200 ms (70), 69 at 100 ms (23), for 1, 5 and 10 commit requests per
// second per member, and with gaps up to 4 KB of metadata per partition
// per commit (at 100 partitions and 100 ms, 4 MB/s of __consumer_offsets
// writes per member). The default stays DefaultCommitInterval (1 s):
// crashes are rare while the commit load is paid all the time and grows
// with the group, a rebalance or shutdown commits at once whatever the
// interval, and the part of the replay the interval does not bound (the
// settled records behind a stuck head, most of it before the metadata) is
// now gone. A service whose handlers are expensive to repeat can set
// WithCommitInterval(200*time.Millisecond) for a fifth of the replay.
//
// # Share groups
//
// WithShareGroup("workers") makes Subscribe join a Kafka share group
// (KIP-932, "queues for Kafka"; Kafka 4.2 or newer with the feature
// share.version enabled, which a newly formatted 4.2+ cluster has)
// instead of a consumer group. The message.Subscriber contract is the
// same except for what follows.
//
// There is no per-key order. The broker hands the records of every
// partition to every member and each record is acknowledged on its own,
// so messages with the same key may be handled at the same time (on two
// members, or on one up to WithConcurrency) and in any order,
// redeliveries included. That is the point: any number of members work
// on a topic, also one with a single partition, where a consumer group
// leaves all but one member idle ("consumers <= partitions"). Use a
// consumer group where order matters.
//
// Each record is acknowledged by its handler's return:
//
//   - nil accepts it: settled for the group, never delivered to it again.
//   - An error (or a panic) releases it after the redelivery backoff
//     (WithRedeliveryBackoff, or the error's own wait when it is a
//     message.RedeliverAfter; the record stays held, its lock renewed, no
//     worker is held): the broker delivers it again, to any member, with
//     its delivery count one higher. Delivery.Attempt is the broker's
//     delivery count (Delivery.Redelivered when it is above 1), so it
//     counts deliveries across members and crashes.
//   - A permanent error rejects it: the broker archives it and never
//     delivers it again (on Kafka 4.4 it writes it to the group's
//     errors.deadletterqueue.topic.name instead, when that group config
//     is set; ferry does not set it). An error is permanent when its
//     chain holds an error with a method Permanent() bool that returns
//     true (retry.Permanent; a codec decode error) or a
//     github.com/cenkalti/backoff/v4 *PermanentError.
//
// The broker bounds redelivery: a record delivered
// share.delivery.count.limit times (a group config; the broker default
// group.share.delivery.count.limit is 5, from 2 to 10) is archived when
// it is released again or its lock expires, and not delivered again.
// That is the one way a share group drops a message that ferry would
// otherwise redeliver forever, so pair share mode with the retry
// middleware and a dead-letter topic, with WithMaxAttempts below the
// limit (its default, 3, is). The retry middleware works unchanged: its
// wait between attempts (message.RedeliverAfter) holds the record for
// that long and then releases it, so each attempt is one delivery by the
// broker, maybe to another member, and Delivery.Attempt, the broker's
// count, is the attempt number it counts from (across members and
// crashes); when the attempts are exhausted, or the error is permanent,
// it dead-letters the message and returns nil, which accepts the record.
// A dead-letter topic rather than the broker's limit, because the copy
// keeps the error and the attempts in its headers and can be replayed,
// while an archived record is gone. The dedupe middleware works
// unchanged too; its "in progress" answer (another member holds the
// message, after a lock expired) releases the record like any error, and
// so uses up one delivery of the limit.
//
// Records are held with an acquisition lock (the group config
// share.record.lock.duration.ms: 30 s by default, from the broker's
// group.share.min.record.lock.duration.ms, 15 s, to its max, 60 s). ferry
// renews the lock (AckRenew, Kafka 4.2+) of every record it holds, queued,
// running or waiting for its release, halfway through the lock and at
// least every half kgo.ConnIdleTimeout (the broker releases a session's
// records when its connection closes), so a long handler keeps its
// record. A record whose lock ran out anyway is delivered again elsewhere
// (at least once).
//
// franz-go accepts, at the next poll, every record of the previous poll
// that has no terminal acknowledgement, renewed ones included: a
// subscriber that kept polling while handlers run would silently settle
// the failures. ferry never polls while a record of the last poll is
// queued, running or waiting for its release, so no record is ever
// accepted unless its handler returned nil. So that workers do not sit
// idle while a poll's last records are handled, a Subscribe call polls
// through min(max(WithConcurrency, 2), 4) share sessions (franz-go
// clients, each a member of the group, sharing the WithConcurrency
// workers): while one waits for its records, another polls. The sessions
// together acquire at most WithMaxPending records per round of polls
// (default 16 per WithConcurrency worker, at least 32; franz-go's
// ShareMaxRecordsStrict), and records
// are fetched only during a poll, so no record waits in a buffer where
// its lock cannot be renewed. The cost: a session waits for the slowest
// record of its poll before it fetches again (see BENCHMARKS.md, "Share
// groups"). Count the sessions against the broker's group.share.max.size
// (200 members per group).
//
// A new share group starts where WithStartOffset says (StartEarliest by
// default, like a consumer group; the broker's own default is latest):
// Subscribe sets the group config share.auto.offset.reset to earliest
// (or latest) before it joins, with an IncrementalAlterConfigs request on
// the GROUP resource (with ACLs this needs ALTER_CONFIGS on the group).
// It applies to partitions the group has not read yet. message.WithReady's
// function is called once the member shows in the group with the topic
// assigned (DescribeShareGroups, asked every 50 ms until then). The
// broker's share.heartbeat.interval.ms (5 s, also its minimum) sets the
// pace of group changes: a new member gets work within about 5 s.
//
// Shutdown (cancel or Close): queued records, and failed ones waiting for
// their release, are released at once; running handlers finish with a
// live context for up to WithDrainTimeout (then it is cancelled, and they
// are still waited for) and their results are acknowledged as above;
// the acknowledgements are sent and the member leaves the group, and
// franz-go releases anything it still holds. Nothing unfinished is
// accepted. After a crash the broker releases the member's records when
// it sees its connections close (a killed process: at once), or when
// their locks expire (a hung process, a lost network), and delivers them
// to the other members with the delivery count one higher (see
// RELIABILITY.md).
//
// WithCommitInterval does not apply (nothing is committed), and
// SubscribeBatch is not available in share mode (it fails with
// message.ErrInvalidConfig). A group ID is either a consumer group or a
// share group: WithShareGroup on the name of an existing consumer (or
// streams) group fails Subscribe with message.ErrInvalidConfig naming it,
// since the broker would give the member no records and no error; the
// reverse, WithGroup on a share group's name, fails the same way. A
// Subscriber
// with WithShareGroup fails Subscribe with message.ErrInvalidConfig when
// the cluster has no share groups.
//
// # Delayed retry tiers
//
// retry.WithDelayedRetry's tiers are Kafka topics named like Spring
// Kafka's retry topics, <topic>-retry-<delay in ms>, created like any
// topic; retry.Policy.Subscribe consumes each with
// Subscriber.SubscribeTier in a consumer group of its own
// (<group>-retry-<delay in ms>), so that the tiers' members never
// rebalance the topic's group. A tier partition whose oldest record is
// not due (the ferry-retry-due header, else Spring's
// retry_topic-backoff-timestamp) is paused with kgo.PauseFetchPartitions
// and resumed by a timer at the due time: no record is handed to the
// handler early, nothing polls, and the other partitions, and the topic,
// keep flowing. Held records are not committed, so a restart, a crash or
// a rebalance while they wait loses none; tier clients fetch with
// TierFetchMaxWait, so a resumed partition is fetched within 250 ms.
// Records another group failed into the same tier topic are settled
// without a handler call. Delivery.Topic is the tier topic,
// Delivery.Tier its number and Delivery.Attempt counts the calls made
// before the record entered the tier.
//
// # Topics
//
// Publish and Subscribe create a missing topic with 8 partitions and the
// broker's default replication factor (WithTopicCreation changes both), or,
// with WithoutTopicCreation, fail with an error matching
// message.ErrTopicNotFound. Known topics are cached per Publisher and
// Subscriber. With WithTopicCreation given explicitly, an existing topic
// whose partition count differs from the option's fails Publish and
// Subscribe with message.ErrInvalidConfig naming both counts (keys would
// map to other partitions than the configuration says); without it, any
// existing count is accepted.
//
// # Configuration
//
// Options are typed by the side that uses them, as franz-go's ProducerOpt
// and ConsumerOpt are: NewPublisher takes PublisherOptions, NewSubscriber
// SubscriberOptions, and an Option is both. So
// kafka.NewPublisher(brokers, kafka.WithGroup("x")) is a compile error, not
// a silent no-op. Every option is validated by the constructor: a bad
// value fails it with an error wrapping message.ErrInvalidConfig that
// names the option ("kafka: ferry: invalid configuration:
// WithConcurrency(0): want at least 1"); nothing is clamped. Nil options
// are skipped.
//
//	Option (both sides)    default
//	WithClientOptions      none; any kgo.Opt, applied after ferry's own, for TLS
//	                       (kgo.DialTLSConfig), SASL (kgo.SASL), linger, buffer and fetch sizes
//	WithTopicCreation      on: 8 partitions, replication -1 (the broker's default)
//	WithoutTopicCreation   off (topics are created)
//	WithLogger             nil: no logging
//	WithObserver           none (message.Observer: events and lag)
//	WithOptions            bundles Options into one, for a list both sides share
//
//	SubscriberOption       default
//	WithGroup              "default"
//	WithShareGroup         off (a consumer group); see "Share groups"
//	WithConcurrency        1
//	WithMaxPending         4096 records, and at least the concurrency
//	WithRedeliveryBackoff  100ms doubling to 10s, with jitter
//	WithDrainTimeout       30s
//	WithStartOffset        StartEarliest, for a group with no commit
//	WithCommitInterval     1s
//
//	PublisherOption        default
//	WithDeliveryTimeout    30s, for a Publish whose ctx has no deadline
//
// Beyond these, what the producer does beyond ferry's settings (acks=all,
// idempotence) is tuned with kgo options through WithClientOptions.
//
// # Logging
//
// WithLogger is the adapter's operational log, the same on every ferry
// adapter. On Kafka it receives franz-go's own log (kgo.WithLogger with a
// bridge to slog, at the levels the logger enables, each record with
// client=franz-go): connections, metadata, group joins, rebalances and
// failed requests and commits. ferry's own events are logged in the one
// format of message.LogEvents (message "ferry: <event>", attributes
// system, topic, group, partition, offset, id, attempt, err): each handler
// error at Debug before the record is redelivered, each failed commit at
// Warn, each failed Publish at Debug. A kgo.WithLogger given with
// WithClientOptions replaces the bridge for franz-go's records.
//
// # Observing
//
// WithObserver gives the adapter's events to a message.Observer (such as
// otelferry's Telemetry, or the application's own): Publish calls,
// handled messages and handler errors, failed commits (autocommits, the
// commit on revocation and at shutdown), and the consumer lag of each
// assigned partition: the high watermark that every fetch response
// carries minus the group's commit point, reported at most every 100 ms
// when it changed, with no request made for it (-1 when the partition
// leaves the subscriber); and connections: each failed dial to a broker
// (EventConnectionLost, logged at Warn) and the first dial that succeeds
// after failures (EventConnectionRestored, Info). franz-go opens and
// reaps connections by itself, so a closed connection alone is not an
// event.
//
// The Subscriber's client decodes fetched records into recycled arrays
// (kgo.WithPools with a kgo.PoolRecords): each record is recycled as soon
// as its message is built, and message payloads point into franz-go's
// decompressed data, which is not pooled, so a handler may keep a message
// and its payload. If WithClientOptions adds a kgo.PoolDecompressBytes,
// ferry stops recycling records, since recycling would hand that data
// back while payloads still point into it.
//
// # Errors
//
// Errors match the message sentinels with errors.Is and, where a broker or
// franz-go error is the cause, that error with errors.As (for example
// *kerr.Error):
//
//   - message.ErrInvalidTopic: empty name, a character outside
//     [a-zA-Z0-9._-], longer than 249, "." or ".." (checked before anything
//     is sent), or a name the broker rejects.
//   - message.ErrInvalidMessage: a nil message; nothing of the batch is sent.
//   - message.ErrMessageTooLarge: a record over the producer's batch limit
//     (kgo.ProducerBatchMaxBytes, default 1,000,012 bytes), checked before
//     anything is sent; or kerr.MessageTooLarge from the broker.
//   - message.ErrTopicNotFound: a missing topic with WithoutTopicCreation,
//     or kerr.UnknownTopicOrPartition from the broker.
//   - message.ErrClosed: Publish or Subscribe after Close.
//   - message.ErrInvalidConfig: a bad option value or kgo.Opt.
//   - *message.PublishError: some records of a Publish failed; it lists
//     them, and its entries wrap the causes above.
//   - context errors are returned as they are, unwrapped.
package kafka
