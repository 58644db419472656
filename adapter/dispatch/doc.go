// Package dispatch is the keyed, ordered dispatcher every ferry adapter uses
// to run handlers.
//
// An adapter submits deliveries in broker order. The dispatcher runs up to
// Concurrency handlers at once, never two deliveries with the same non-empty
// key at once, and same-key deliveries strictly in submission order. A
// handler error or panic makes it run the same delivery again after an
// exponential backoff (Backoff, a github.com/cenkalti/backoff/v4 policy
// per failing delivery), or after the delay of a handler error made with
// message.RedeliverAfter, before any later delivery with that key; other
// keys keep flowing meanwhile (a worker is not held during the wait: this
// is how the retry middleware waits between its attempts). Each
// delivery whose handler returned nil is reported to the adapter's settle
// callback, which commits or acks it; each handler error to the error
// observer (Config.OnError), if any. Deliveries with an empty key have no
// ordering constraint.
//
// Workers take ready deliveries a fair share at a time (ready/Concurrency,
// at least 1, at most 64) under one lock acquisition, so the hand-off costs
// little per message. A claimed delivery that has not started is not tied
// to its worker: a worker with nothing ready steals it, a worker seen by
// another to have started nothing for a millisecond (stallAfter) loses it
// to that one even when more is ready, Remove drops it, and once Shutdown
// began its worker abandons it.
// So a slow handler (or error observer) holds up only its own delivery and
// the later ones of its key.
//
// Submit blocks while MaxPending deliveries are accepted but not gone,
// which is the adapters' backpressure. Remove drops the matching deliveries
// that are not running (those of revoked partitions) and returns a channel
// closed once the matching running ones have finished; it cancels no
// context. Shutdown stops intake, lets in-flight handlers finish within
// the drain timeout, then cancels their context and waits for them.
//
// # Scopes: revoking a partition
//
// A Scope (NewScope) groups the deliveries of one assignment of a
// partition, or of one channel or shard queue: the unit a rebalance takes
// away. A delivery with a Scope runs its handler with the scope's
// context, a child of the handler context. Drain(scope) is the
// revocation: it removes the scope's deliveries that are not running
// (like Remove), lets its running handlers finish with their context
// intact for the drain timeout, then cancels the scope's context (only
// that one; other partitions' handlers go on), and closes its channel
// once none of them runs any more. The adapter hands the partition on
// (commits, releases the shard, lets the rebalance go on) only after
// that, so a key never runs on two members at once. Every ferry adapter
// revokes this way: Kafka in its OnPartitionsRevoked callback, inmem in a
// background drain per partition, amqp when a shard queue moves.
//
// # Batches
//
// With Config.Batch set (batch.go), the workers hand batches to a
// message.BatchHandler instead of running a handler per delivery. One
// worker at a time fills a batch: it takes ready deliveries in order and,
// with each keyed one (its key's queue head), the deliveries queued
// behind it, in order; while it fills, a delivery submitted for a key
// whose whole queue is in the batch joins the batch too. The batch is
// handed over as soon as it is full (Limits.MaxMessages, or the next
// delivery would pass Limits.MaxBytes; a single larger delivery is a batch
// of its own) or Limits.MaxWait after it started filling, never empty;
// then the next idle worker fills the next one. So up to Concurrency
// batches run at once and, since a batch holds a key's head and only
// heads are ever ready, no two running batches share a key.
//
// A batch's deliveries are running (sClaimed, taken set) from the moment
// they join it: Remove and Drain wait for them (a filling batch is handed
// over within MaxWait) and mark them dropped; Shutdown makes a batch that
// has not started abandon them (gone, not settled). The batch's handler
// runs with the scope's context when all its deliveries share one, else
// with a context cancelled when any of their scopes' is.
//
// The result is read with message.BatchResults. Per key, the deliveries
// before the key's first failure settle (the settle callback, or
// Batch.Settled once for the batch); the failed one and the later ones of
// its key in the batch stay in its queue, in order: the failed one backs
// off as its head (Attempt + 1, the error's own delay if it has one),
// the later ones are queued behind it (Attempt + 1 only for those that
// failed themselves). Keyless failures back off on their own. Dropped
// deliveries and failures during Shutdown go, not settled. The error
// observer sees each failed delivery with its error.
//
// # Delivery states
//
// The code keeps a delivery's state in Delivery.state (the s* constants in
// queue.go); claimed and running share sClaimed and differ in the taken
// flag.
//
//	state        Delivery.state         where the delivery is
//	queued       sQueued                its key's queue, behind the head
//	ready        sReady                 d.ready; keyed: also its queue's head
//	claimed      sClaimed, taken=false  w.items of one or more workers
//	running      sClaimed, taken=true   owned by the worker that flipped taken
//	backing off  sBackoff               d.backoffs (its timer); keyed: also its queue's head
//	gone         sGone                  nowhere; final
//
// "Running" covers the handler, then the settle callback (nil error) or the
// error observer (an error), all on the worker goroutine without the lock,
// up to completeLocked. A delivery whose worker finds that Shutdown began
// before it started it is running too, briefly: the worker completes it
// as abandoned without calling the handler.
//
// Transitions, each under Dispatcher.mu unless marked (file: function):
//
//	from          to           when                                      where
//	submitted     ready        keyless, or its key has no queue          queue.go: enqueueLocked
//	submitted     queued       its key has a queue                       queue.go: enqueueLocked
//	queued        ready        the head before it went (not stopping)    queue.go: advanceLocked; shutdown.go: Remove
//	ready         claimed      a worker claims it (taken := false)       claim.go: claimLocked
//	claimed       running      its worker flips taken (no lock)          run.go: runClaim
//	claimed       running      a thief flips taken                       claim.go: stealLocked, stealStalledLocked
//	running       gone         nil error; after the settle callback      run.go: completeLocked, finishLocked
//	running       backing off  error; after the observer                 run.go: completeLocked; backoff.go: backoffLocked
//	running       gone         error, and dropped or stopping            run.go: completeLocked, finishLocked
//	running       gone         abandoned: Shutdown began before it ran   run.go: runClaim, completeLocked
//	backing off   ready        its timer fired, same gen, not stopping   backoff.go: backoffDone
//	queued        gone         Remove matched it                         shutdown.go: Remove
//	ready         gone         Remove matched it                         shutdown.go: Remove
//	claimed       gone         Remove matched it and flipped taken       shutdown.go: Remove
//	backing off   gone         Remove matched it (timer stopped)         shutdown.go: Remove
//
// A delivery that goes (finishLocked) makes the next one of its key ready,
// or retires the key's queue when it was the last. Attempt is set to 1
// before the first run and incremented on running -> backing off, so a
// redelivery runs with the attempt after the one that failed.
//
// # Remove and Shutdown, per state
//
// Drain acts as Remove on the scope's deliveries, and cancels the
// context of the running ones once the drain timeout passed (they still
// run to the end, as for Shutdown).
//
//	state        Remove (matching deliveries)             Shutdown
//	queued       gone, not settled                        left in place, never run
//	ready        gone, not settled                        left in place, never run
//	claimed      gone, not settled                        abandoned by its worker: gone, not settled
//	running      runs to the end, context intact; settle  runs to the end; context cancelled after
//	             callback or observer as usual; marked    DrainTimeout; settle callback or observer
//	             dropped, so an error does not back off   as usual; an error does not back off
//	backing off  gone (timer stopped), not settled        timer stopped; left in place, never run
//	gone         -                                        -
//
// Remove's (and Drain's) channel is closed when every delivery that was
// running and matched has completed; Drain then stops its timer and
// releases the scope's context, under the lock (waiter.finish). Shutdown returns when no delivery is claimed or
// running and every worker has exited; it leaves what it did not run in
// place (Pending still counts it), since the Dispatcher is finished and
// the broker redelivers whatever was not settled.
//
// # Locks and ownership
//
// Dispatcher.mu guards the keys map, the queues and their free list, the
// ready list, the idle-worker count, the pending and inflight counts, the backoff timers map, the Remove waiters,
// stopping, each worker's items and stolen flag, and each delivery's q,
// state, failures, bo, gen and dropped fields. It also guards Msg.Delivery.Attempt
// while the delivery is not running (backoffLocked writes it). Three atomics
// are read outside it: Delivery.taken, which decides who owns a claimed
// delivery (its worker flips it without the lock; thieves and Remove flip
// it under the lock); worker.started, which other workers read to tell a
// stalled worker; and Dispatcher.stopped, the workers' unlocked view of
// stopping.
//
// A running delivery belongs to its worker, which uses it without the lock:
// it sets Attempt to 1 on the first run and calls the handler, then the
// settle callback or the error observer. Nothing else changes the delivery
// meanwhile: Remove only reads it through match and marks it dropped, and
// no other worker can take it, since it is not ready and its taken flag is
// set. The observer is called before completeLocked schedules the
// redelivery, so it sees the delivery as it failed, and a slow observer
// holds up only its own worker (the key waits, as for a slow handler).
//
// # Invariants
//
//   - One head per key: only a queue's head (items[head]) is ever ready,
//     claimed, running or backing off; all deliveries behind it are queued.
//     So a key has at most one delivery ready, claimed, running or backing
//     off, and its deliveries never run concurrently.
//   - Order: a key's deliveries enter its queue in Submit order and leave
//     it from the head (finishLocked) or, when Remove matches them, from
//     anywhere, keeping the order of the rest. A failed head stays head
//     while it backs off, so its redelivery runs before any later delivery
//     of its key.
//   - Pending: pending counts the deliveries accepted and not gone. It is
//     incremented once in enqueueLocked and decremented once, on the step
//     to gone (finishLocked, or Remove's releaseLocked). Submit blocks
//     while pending >= MaxPending; the step from full to not full signals
//     Space.
//   - In flight: inflight counts the claimed and running deliveries, each
//     once, even when it sits in two claims. claimLocked adds what it takes
//     from the ready list; completeLocked and Remove (for a claimed
//     delivery it takes) subtract. Shutdown waits for it to reach 0.
//   - One owner: a claimed delivery may sit in more than one worker's items
//     (a thief leaves it in the claim it stole from; a delivery that backed
//     off and was claimed again may linger in an older claim not yet run
//     through). Exactly one party flips its taken flag and completes it;
//     the others skip it.
//   - Timers: until Shutdown, d.backoffs holds exactly the backing-off
//     deliveries. A timer acts only if the delivery is still backing off
//     with the generation it was set for, so a stopped timer that fired
//     anyway does nothing.
package dispatch
