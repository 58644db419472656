package dispatch

import (
	"sync/atomic"
	"time"
)

// maxClaim bounds how many ready deliveries a worker takes under one lock.
const maxClaim = 64

// stallAfter is how long a worker may go without starting a delivery while
// it holds claimed, unstarted ones before other workers take them.
const stallAfter = time.Millisecond

// worker is one handler goroutine's claim: the deliveries it took from the
// ready list under one lock, run in order. An idle worker may steal a
// delivery another worker claimed but has not started, so a slow handler
// holds up nothing but its own delivery. Whoever flips a claimed
// delivery's taken flag first (its worker, a thief or Remove) runs or
// drops it and completes it.
//
// items and stolen are written by the worker under the dispatcher's lock
// and read by other workers and Remove under it; the worker itself reads
// them without it while it runs the claim. A delivery may appear in more
// than one claim: a thief does not take it out of the claim it stole from,
// and a delivery that backed off and was claimed again may still sit in
// an older claim its worker has not finished yet. Only the taken flag
// says who has it.
type worker struct {
	idx    int
	items  []*Delivery // nil entries are completed
	stolen bool        // items is one delivery taken (flag already set) from another worker
	// started counts the deliveries this worker started; seen holds the
	// other workers' counts and when this worker first saw them, so it can
	// tell a worker stuck in one handler (or error observer) from one
	// working through its claim (or merely not scheduled for a moment).
	started atomic.Uint64
	seen    []seenCount
}

type seenCount struct {
	n  uint64
	at time.Time
}

// wakeLocked wakes an idle worker when there is work for it. A woken
// worker wakes the next one if work remains after its claim.
func (d *Dispatcher) wakeLocked() {
	if d.bat != nil {
		d.wakeBatchLocked()
		return
	}
	if d.idleN > 0 && len(d.ready) > d.readyHd {
		d.work.Signal()
	}
}

// claimLocked fills w with ready deliveries, a fair share of what is ready
// (at most maxClaim), or else with one delivery stolen from another
// worker's claim. It reports whether w got any. Stalled workers are robbed
// first, so a delivery claimed behind a stuck handler does not wait until
// the ready list runs dry.
//
// Transitions: ready -> claimed (taken reset to false, inflight += k);
// claimed -> running for a stolen delivery (taken flipped here, already
// counted in inflight).
func (d *Dispatcher) claimLocked(w *worker) bool {
	if dl := d.stealStalledLocked(w); dl != nil {
		w.items = append(w.items, dl)
		w.stolen = true
	} else if n := len(d.ready) - d.readyHd; n > 0 {
		k := min(max(n/d.cfg.Concurrency, 1), maxClaim)
		for range k {
			dl := d.popReady()
			dl.state = sClaimed
			dl.taken.Store(false)
			w.items = append(w.items, dl)
		}
		d.inflight += k
	} else if dl := d.stealLocked(w); dl != nil {
		w.items = append(w.items, dl)
		w.stolen = true
	} else {
		return false
	}
	// Wake another worker for what is still ready, or to steal from
	// this claim if this worker's first handler is slow.
	if d.idleN > 0 && (len(d.ready) > d.readyHd || len(w.items) > 1) {
		d.work.Signal()
	}
	return true
}

// stealStalledLocked takes a claimed, not yet started delivery from a
// worker that has started nothing for stallAfter: its handler is slow (or
// stuck), and what it claimed after that delivery must not wait for it
// while the other workers keep finding new ready work.
func (d *Dispatcher) stealStalledLocked(w *worker) *Delivery {
	if len(d.workers) == 1 {
		return nil
	}
	var now time.Time
	for i, o := range d.workers {
		if o == w || o.stolen || len(o.items) == 0 {
			continue
		}
		if now.IsZero() {
			now = time.Now()
		}
		if n := o.started.Load(); n != w.seen[i].n || w.seen[i].at.IsZero() {
			w.seen[i] = seenCount{n: n, at: now} // it moved on since we last looked
			continue
		}
		if now.Sub(w.seen[i].at) < stallAfter {
			continue
		}
		if dl := takeUnstarted(o); dl != nil {
			return dl
		}
	}
	return nil
}

// stealLocked takes a claimed, not yet started delivery from another worker.
func (d *Dispatcher) stealLocked(w *worker) *Delivery {
	for _, o := range d.workers {
		if o == w || o.stolen {
			continue
		}
		if dl := takeUnstarted(o); dl != nil {
			return dl
		}
	}
	return nil
}

// takeUnstarted flips the taken flag of the first claimed, unstarted
// delivery in o's claim and returns it: claimed -> running, for the
// caller.
func takeUnstarted(o *worker) *Delivery {
	for _, dl := range o.items {
		if dl != nil && dl.state == sClaimed && !dl.taken.Load() && dl.taken.CompareAndSwap(false, true) {
			return dl
		}
	}
	return nil
}
