package dispatch

import (
	"errors"

	"github.com/ferrymsg/ferry/adapter"
)

// errAbandoned is the result of a claimed delivery not run because
// shutdown began.
var errAbandoned = errors.New("abandoned at shutdown")

// run is a worker goroutine: it claims ready deliveries, runs them and
// completes each, taking the lock once per delivery.
func (d *Dispatcher) run(w *worker) {
	defer d.wg.Done()
	if d.bat != nil {
		d.runBatches(w)
		return
	}
	d.mu.Lock()
	for {
		if d.stopping {
			d.mu.Unlock()
			return
		}
		if !d.claimLocked(w) {
			d.idleN++
			d.work.Wait()
			d.idleN--
			continue
		}
		d.mu.Unlock()
		d.runClaim(w)
	}
}

// runClaim runs w's deliveries, skipping those another took first and all
// of them once shutdown began. Each is completed as soon as it ran, so the
// next delivery of its key becomes ready at once. It returns with d.mu
// held.
//
// Between flipping taken (claimed -> running) and completeLocked the
// delivery belongs to this worker alone and the lock is not held: the
// handler, then the settle callback (nil error) or the error observer
// run here. Nothing else changes the delivery meanwhile: Remove only
// marks it dropped (a field the callbacks cannot see) and waits, and
// Shutdown waits.
func (d *Dispatcher) runClaim(w *worker) {
	locked := false
	for i, dl := range w.items {
		if locked {
			d.mu.Unlock()
			locked = false
		}
		var err error
		switch {
		case !w.stolen && !dl.taken.CompareAndSwap(false, true):
			continue // stolen or removed; its taker completes it
		case d.stopped.Load():
			err = errAbandoned
		default:
			w.started.Add(1)
			if dl.Msg.Delivery.Attempt < 1 {
				dl.Msg.Delivery.Attempt = 1
			}
			hctx := d.hctx
			if dl.Scope != nil {
				hctx = dl.Scope.ctx
			}
			err = adapter.Call(hctx, d.h, dl.Msg)
			if err == nil {
				if d.settled != nil {
					d.settled(dl)
				}
			} else if d.cfg.OnError != nil {
				d.cfg.OnError(dl, err)
			}
		}
		d.mu.Lock()
		locked = true
		d.completeLocked(dl, err)
		w.items[i] = nil
	}
	if !locked {
		d.mu.Lock()
	}
	w.items, w.stolen = w.items[:0], false
}

// completeLocked applies the outcome of a running delivery: settled,
// dropped and abandoned ones go (running -> gone) and the next delivery of
// their key becomes ready; failed ones back off and stay first in their
// key (running -> backing off). It releases the Remove calls waiting for
// dl and wakes Shutdown when the last in-flight delivery completed.
func (d *Dispatcher) completeLocked(dl *Delivery, err error) {
	d.inflight--
	switch {
	case err == errAbandoned:
		d.finishLocked(dl) // not settled: the broker redelivers it later
	case err != nil:
		if dl.dropped || d.stopping {
			d.finishLocked(dl)
		} else {
			d.backoffLocked(dl, err)
		}
	default:
		d.finishLocked(dl)
	}
	if len(d.waiting) > 0 {
		if ws, ok := d.waiting[dl]; ok {
			delete(d.waiting, dl)
			for _, wt := range ws {
				if wt.remaining--; wt.remaining == 0 {
					wt.finish()
				}
			}
		}
	}
	if d.stopping && d.inflight == 0 {
		d.idle.Broadcast()
	}
}
