package dispatch

import (
	"context"
	"time"
)

// Scope groups the deliveries of one partition assignment (or of one
// channel, one shard queue): what a rebalance revokes together. Handlers
// of a scope's deliveries run with the scope's context, a child of the
// dispatcher's handler context, so that Drain can cancel them without
// touching other partitions' handlers. Create one with NewScope for each
// assignment and set it on each Delivery of that assignment; end it with
// Drain, once. A Scope is cheap: one context, no goroutine.
type Scope struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// NewScope returns a new scope whose handlers' context is cancelled by
// Drain (after the drain timeout) or by Shutdown (after the drain
// timeout), whichever comes first.
func (d *Dispatcher) NewScope() *Scope {
	ctx, cancel := context.WithCancel(d.hctx)
	return &Scope{ctx: ctx, cancel: cancel}
}

// Context returns the context the scope's handlers run with.
func (s *Scope) Context() context.Context { return s.ctx }

// Drain gives up a scope: the revocation of a partition. It removes the
// scope's deliveries that are not running, as Remove does (queued, ready,
// claimed and not started, backing off: gone, not settled), and returns
// a channel closed once none of its running handlers runs any more. The
// running ones finish with their context intact for the drain timeout
// (Config.DrainTimeout); then Drain cancels the scope's context, and so
// only their context: the dispatcher's other handlers go on. A success is
// still settled (the settle callback runs) and an error observed, but not
// retried.
//
// The adapter waits on the channel before handing the partition to
// another member, so that a key never runs on two members at once; a
// handler that ignores its cancelled context keeps the channel open until
// it returns (Shutdown then waits for it too). Drain starts no goroutine:
// a timer cancels the context, and the last handler to return stops it.
// Deliveries submitted with the scope after Drain run with a cancelled
// context once the drain timeout passed; submit none. Drain is safe to
// call more than once; each call returns a channel of its own.
func (d *Dispatcher) Drain(s *Scope) <-chan struct{} {
	t := time.AfterFunc(d.cfg.DrainTimeout, s.cancel)
	return d.remove(func(dl *Delivery) bool { return dl.Scope == s }, func() {
		t.Stop()
		s.cancel() // releases the context; no handler of the scope runs
	})
}
