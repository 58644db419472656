// Package outbox is the transactional outbox: a service writes its
// business change and the messages about it in one database transaction,
// and a relay publishes the committed messages to the broker. Nothing is
// published for a transaction that rolled back, and nothing committed is
// lost when the process crashes between the write and the publish.
//
//	ob, err := outbox.New(ctx, db)                 // creates the tables (idempotent)
//
//	tx, _ := db.BeginTx(ctx, nil)
//	tx.ExecContext(ctx, `INSERT INTO orders ...`)
//	ob.Write(ctx, tx, "order-events", &message.Message{Key: orderID, Payload: event})
//	tx.Commit()
//
//	relay, err := outbox.NewRelay(ob, publisher)   // any message.Publisher
//	go relay.Run(ctx)
//
// PostgreSQL (production; several relays may share a table) and SQLite
// (embedded; one relay) are supported through database/sql, with the
// drivers of the dedupe SQL store: github.com/jackc/pgx/v5/stdlib and
// modernc.org/sqlite.
//
// # Delivery semantics
//
// At least once, in per-key order. Write assigns each message its ID at
// write time (message.NewIDs, like publishers), so every publication of a
// row, the first or a repeat after a crash, carries the same ID, and the
// dedupe middleware on the consumer side absorbs repeats. A row is removed
// (or, with WithRetention, marked) only after Publish returned nil for it.
// A repeat happens only when a relay dies (or loses its database
// connection) between a Publish and the removal of its rows: those rows
// are published again by the next owner of their shard.
//
// # Ordering
//
// Messages of one key are published in the order in which they were
// written, per topic, when the writes are ordered: within one
// transaction, and across transactions when the later one wrote after the
// earlier one committed (it read or locked what the first one wrote, which
// is how a service orders two changes of one entity). Messages of
// transactions that ran concurrently without touching common rows have no
// order between them to keep; they come in the order the relay sees them.
//
// How: every row gets a sequence number at insert (an identity column;
// AUTOINCREMENT on SQLite), and a shard, a hash of the key (of the ID for
// an empty key). The relay of a shard reads its unpublished rows in
// sequence order and removes what it published, so there is no
// high-water mark to skip rows: a row whose transaction commits after
// rows with higher sequence numbers were published is simply read at the
// next poll. This is the bug of polling "WHERE id > last" (Watermill's
// issue #311), and the mutants test proves that the tests catch it.
//
// Why not order by transaction ID with the pg_snapshot_xmin barrier:
// PostgreSQL assigns a transaction ID at the first write, not at commit.
// A transaction that wrote anything before waiting for another's row lock
// has the lower ID although it writes its message after the other
// committed, and would be published first (the test "a transaction that
// wrote after another committed publishes after it" is that case). The
// proof for sequence order: if T2 writes message m2 of key k after T1,
// which wrote m1 of k, committed, then seq(m1) < seq(m2) (the sequence
// is monotonic, cache 1), and any read that sees m2 sees m1 too (T1
// committed before T2 began writing it); the relay reads in sequence
// order and never publishes a row of a key past an unpublished earlier
// one, so m1 goes first.
//
// A publish failure holds back its key, not the shard: the rows of that
// key after the failed one stay, the other keys go on, and after a
// failure the relay sends only the first pending row of each key until an
// attempt succeeds, so a repeating failure does not republish the rest.
// Exact order of first publications needs what both adapters do: when a
// Publish call fails a message, it fails the later messages of the same
// key in that call too (Kafka: one partition per key, and franz-go's
// idempotent producer fails the rest of a partition's records after a
// failed one; RabbitMQ: a call goes to one channel, in order). With a
// publisher that fails a message alone and accepts later ones of its key,
// the relay keeps those rows and publishes them again after the failed
// one (duplicates with the same IDs): the last copies are in order, the
// first ones are not. A call refused as a whole for good (the adapters
// check every message of a call before sending any) is retried one
// message at a time, so that only the bad message goes to the dead table.
//
// # Several relays (PostgreSQL)
//
// Run one relay per service replica, or several: each shard is owned by
// one relay at a time through a session-level advisory lock
// (pg_try_advisory_lock(class, shard), class a hash of the table name)
// held on one connection, the lock session. Workers read and remove rows
// on the pool, one per owned shard, and ping the lock session before each
// batch: a live session still holds its locks, so a relay whose session
// died (and whose shards another relay may have taken) reads nothing
// more; only the batch it had in flight can be published by both. Every
// running relay also holds a shared advisory lock that the relays count,
// and takes up to its fair share, ceil(shards / relays), handing over the
// rest after their batch in flight (WithRebalanceInterval). A relay that
// dies releases its locks with its session, and another takes the
// shards within a rebalance interval. The shard count is stored in the
// <table>_meta table and all writers and relays use it (WithShards).
//
// How a batch is removed: with pgx's driver, one statement deletes a
// batch of the shard's pending rows and returns them (DELETE ... WHERE
// ctid = ANY(ARRAY(SELECT ctid ... ORDER BY seq LIMIT n)) RETURNING ...)
// in a transaction that stays open while the rows are published and is
// committed only after Publish returned nil for every one of them; after
// any failure it is rolled back and the batch is settled row by row
// (published rows deleted, failed ones kept in order, rejected ones moved
// to the dead table). A relay that dies meanwhile has its transaction
// rolled back with its session. With another driver, or WithRetention,
// the relay reads the batch, publishes it, then deletes (or marks) the
// published rows. Removals run with synchronous_commit off (a removal
// lost to a database crash only republishes, with the same IDs).
//
// A relay uses two connections of the *sql.DB for as long as it runs
// (the lock session; LISTEN), plus one pool connection per busy shard
// while its batch is read and published: size the pool (SetMaxOpenConns)
// for that beside the service's own use, and let it keep them idle
// between batches (SetMaxIdleConns, default 2 in database/sql: below the
// shard count the pool closes and reopens a connection, with its
// authentication, every few batches).
//
// SQLite: one relay per database and table, enforced (one worker reads
// the shards in turn, so a failure backs off all of them): Run fails with
// ErrRelayRunning while another relay runs on the table, in this
// process or in another (a flock on "<database file>.<table>.relay-lock",
// released by the kernel when the process dies, so a restarted relay
// takes over at once after a crash).
//
// # Latency
//
// On PostgreSQL, Write sends pg_notify with the row's shard, delivered at
// commit, and the relay LISTENs (through pgx; with another driver it
// polls only), so a committed row is published within milliseconds.
// NOTIFY is a hint: notifications can be lost while the LISTEN
// connection reconnects, so every shard is also read every poll interval
// (WithPollInterval; 500 ms on PostgreSQL, 100 ms on SQLite) and after
// each reconnection. WithoutNotify turns the NOTIFY off (it takes a
// global lock on PostgreSQL's notification queue at each commit).
// BENCHMARKS.md has the figures.
//
// # Failures
//
//   - Broker down, or any error IsPermanent does not call permanent
//     (timeouts, message.ErrUnroutable, message.ErrTopicNotFound): the
//     rows stay, their attempts and last_error columns are updated, and
//     the shard is retried with exponential backoff (WithBackoff, from
//     cenkalti/backoff/v4; forever) in order. Stats and the logger
//     (WithLogger) report each failure.
//   - Rejected for good (message.ErrMessageTooLarge,
//     message.ErrInvalidTopic, message.ErrInvalidMessage; see
//     WithPermanentError): the row moves to the dead table
//     (<table>_dead) with the error and the number of attempts, in one
//     transaction, and the later rows of its key go on. DeadLetters
//     lists the dead table, Replay moves rows back (with new sequence
//     numbers, keeping their IDs), DiscardDead deletes them.
//   - Database down: reads and removals fail and are retried with
//     backoff; a relay that lost its lock connection stops its workers,
//     reconnects and takes shards again.
//   - Relay killed (SIGKILL): the rows it had not removed (its open
//     batch's deletion is rolled back by the server with the session)
//     are published by the next owner of their shards, with the same
//     IDs.
//   - Graceful stop (Run's ctx cancelled): batches in flight are
//     finished (WithPublishTimeout) and removed, then the locks are
//     released: nothing is published twice.
//
// # Schema
//
// New creates the tables with CREATE TABLE IF NOT EXISTS, as the dedupe
// store does (safe from several processes at once); WithTable names them
// (default DefaultTable, "ferry_outbox"). For migrations, take the DDL
// from Schema and pass WithoutSchemaCreation. On PostgreSQL:
//
//	CREATE TABLE IF NOT EXISTS ferry_outbox (
//		seq          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
//		shard        INTEGER NOT NULL,
//		topic        TEXT NOT NULL,
//		msg_id       TEXT NOT NULL,
//		msg_key      TEXT NOT NULL,
//		payload      BYTEA NOT NULL,
//		headers      TEXT NOT NULL,        -- JSON object
//		msg_time     BIGINT NOT NULL,      -- Unix µs
//		created_at   BIGINT NOT NULL,      -- Unix µs
//		attempts     INTEGER NOT NULL DEFAULT 0,
//		last_error   TEXT,
//		published_at BIGINT                -- set with WithRetention
//	);
//	CREATE INDEX IF NOT EXISTS ferry_outbox_pending ON ferry_outbox (shard, seq) WHERE published_at IS NULL;
//	CREATE INDEX IF NOT EXISTS ferry_outbox_published ON ferry_outbox (published_at) WHERE published_at IS NOT NULL;
//	-- ferry_outbox_dead: the same columns (seq the original number) plus error and failed_at
//	-- ferry_outbox_meta: one row, the shard count
//
// # Consumer-side outbox
//
// With the dedupe SQL store in the same database, a handler consumes a
// message, writes its business data, marks the message processed
// (sqlstore.MarkProcessedTx) and writes its outgoing messages (Write) in
// one transaction: a redelivered input is skipped, a crashed attempt
// leaves nothing behind, and each committed output is relayed with one ID
// however often it is published: effectively once from input to output.
// See the example of Outbox.Write and examples/outbox.
//
// # Configuration
//
// Outbox (New): WithTable (DefaultTable), WithDialect (Detect),
// WithShards (the stored count, DefaultShards = 8 for a new table),
// WithMaxMessageSize (DefaultMaxMessageSize = 1,000,000 bytes),
// WithTopicCheck (none beyond the basic checks), WithoutNotify (NOTIFY
// on), WithRetention (0: delete at once), WithoutSchemaCreation (create),
// WithClock (time.Now).
//
// Relay (NewRelay): WithBatchSize (500), WithPollInterval (500 ms
// PostgreSQL, 100 ms SQLite), WithBackoff (100 ms to 10 s),
// WithPermanentError (IsPermanent), WithPublishTimeout (30 s),
// WithRebalanceInterval (1 s), WithLogger (nil).
//
// # Errors
//
// Write checks its arguments before writing anything: nil context or tx
// and bad options wrap message.ErrInvalidConfig; a bad topic
// message.ErrInvalidTopic; a nil message, or an ID, key or header that is
// not UTF-8 text without NUL, message.ErrInvalidMessage; a message over
// WithMaxMessageSize message.ErrMessageTooLarge. Database errors are
// wrapped with the operation and table ("outbox: write 3 message(s) to
// \"orders\" into ferry_outbox: ..."), so errors.As finds the driver's
// error; context errors come back unwrapped.
package outbox
