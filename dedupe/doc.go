// Package dedupe is the idempotent-consumer middleware: it turns ferry's
// at-least-once delivery into effectively-once processing by skipping
// messages whose key was already processed successfully.
//
//	store, _ := dedupe.NewMemoryStore()             // or sqlstore.New(ctx, db)
//	dd, _ := dedupe.New(store)                       // key: msg.ID
//	h := message.Chain(handle, retryMiddleware, dd) // retry outermost
//	err := sub.Subscribe(ctx, "orders", h)
//
// # Delivery semantics
//
// For each message the middleware computes a key (msg.ID by default; see
// WithKey, KeyByPosition, KeyByHeader) and claims it in a Store:
//
//   - processed before (within the retention TTL): the handler does not
//     run and the message is settled (nil);
//   - free: the handler runs under a claim. When it returns nil the key is
//     marked processed (Complete), and only then. When it returns an error
//     or panics the claim is released and the error returned, so the
//     subscriber redelivers the message and the redelivery runs it. A
//     message is never settled unless a handler run succeeded;
//   - claimed by another delivery whose lease has not ended (a duplicate
//     being handled at the same moment: two consumers after a rebalance,
//     two copies handled in parallel): the handler does not run and the
//     middleware returns ErrInProgress. It does not wait: the subscriber
//     redelivers the message after its backoff, and by then the key is
//     processed (the redelivery is skipped) or free again because the first
//     run failed (the redelivery runs it). It never settles a message whose
//     first run might still fail.
//
// Claims carry a lease (WithLease, default one minute), renewed while the
// handler runs (WithLeaseRenewal, default every lease/3). If the consumer
// crashes, renewal stops and the lease expires: the key is free again and
// a redelivery runs the message. A crashed consumer therefore blocks its
// keys for at most one lease. With renewal turned off the lease must exceed
// the longest handler run, or a duplicate arriving meanwhile may run
// concurrently. A claim whose lease expired and was taken over cannot
// release or renew the new claim (Release and Extend are fenced by a
// Token); if it still succeeds, its Complete marks the key processed.
//
// Processed keys are retained for a TTL (default 24 h) and then purged; a
// duplicate older than that runs again. Size the TTL beyond the longest
// redelivery window (consumer downtime, Kafka retention you may replay).
//
// A message whose key is empty (KeyByHeader on a message without the
// header) is not deduplicated: its handler runs as without the middleware.
// Nothing is dropped and nothing blocks; such messages are at-least-once.
//
// Put dedupe inside the retry middleware: message.Chain(handle, retryMW,
// dedupeMW). Each retry attempt then claims the key and a failed attempt
// releases it; a message that retry dead-letters is not marked processed,
// so replaying it from the DLT later runs it. ErrInProgress wraps
// message.ErrRedeliver, so retry hands it straight back to the subscriber
// (no in-process retries, never dead-lettered). The other order is wrong:
// a dedupe outside retry would record a dead-lettered message as processed
// and silently skip its replay.
//
// # Batch handlers
//
// New's middleware wraps a message.Handler; NewBatch's wraps a
// message.BatchHandler: it claims each message of a batch on its own,
// removes the processed ones before the handler, completes each message
// the handler succeeded on and releases each failed one. The two types do
// not convert, so a per-message dedupe never silently dedupes a whole
// batch under one key.
//
// # Limits of effectively-once
//
// Dedupe stops a second run of the handler, not a repeat of what a run did
// before it failed or crashed. Between a successful handler and Complete
// there is a window: a crash there lets a redelivery run the handler again.
// Side effects outside a transaction with the processed mark (an HTTP call,
// an e-mail, a publish) can therefore repeat; make them idempotent
// themselves where that matters. The SQL store closes the window for
// database writes: mark the key inside the business transaction with
// sqlstore's MarkProcessedTx, so the write and the mark commit or roll back
// together (the classic processed_messages table). The middleware's own
// Complete afterwards then changes nothing. The handler need not recompute
// the key: KeyFromContext(ctx) returns the one the middleware claimed
// (whatever WithKey computes), and MarkProcessedTx(ctx, tx, "") uses it.
//
// New rejects a nil Store, typed nils included (a nil *MemoryStore in the
// interface), with message.ErrInvalidConfig: such a store would panic on
// every delivery. A nil message passed to the middleware's handler goes to
// the next handler undeduplicated; the KeyFuncs return "" for it.
//
// The memory store only remembers within one process: it catches in-process
// redeliveries and duplicate publishes, not duplicates after a restart, and
// not across instances. Use the SQL store (PostgreSQL for several
// instances sharing one table, SQLite embedded) for those.
//
// Use one store (one table) per consumer group: keys are not namespaced by
// group, so two groups sharing a store would skip each other's messages.
// KeyByPosition includes the group.
//
// # Stores
//
// MemoryStore: bounded (WithMaxKeys, default 100,000), evicting the oldest
// processed key first and never a live claim (ErrStoreFull, and thus a
// redelivery, when every slot is a live claim); TTL (WithTTL); expired keys
// are purged lazily on Claim, so the store starts no goroutine, and Close
// leaves none. Package dedupe/sqlstore: PostgreSQL and SQLite over
// database/sql. Any other implementation of Store must pass the suite in
// package dedupe/dedupetest.
//
// # Configuration
//
//   - WithKey(f): the dedupe key; default KeyByID (msg.ID).
//   - WithLease(d): claim lease; default DefaultLease (1 min).
//   - WithLeaseRenewal(d): renewal interval; default lease/3; 0 turns it off.
//   - WithOnDuplicate(fn): called for each skipped duplicate (logs, metrics); default none.
//   - WithObserver(o): each skipped duplicate as a message.EventDuplicateSkipped (otelferry marks the span); default none.
//   - WithLogger(l): each skipped duplicate at Debug, in message.LogEvents' format; default nil, no logging.
//
// # Errors
//
// ErrInProgress: another delivery holds the key; the message is redelivered.
// Store errors (claim, complete, release) are returned wrapped with the
// operation and key, so the message is redelivered rather than settled;
// context errors come back unwrapped. A handler that returns an error
// wrapping ErrAlreadyProcessed (from MarkProcessedTx) is treated as done:
// the middleware returns nil. Bad options return errors wrapping
// message.ErrInvalidConfig.
package dedupe
