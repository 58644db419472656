package dispatch

import "time"

// waiter is one Remove call waiting for the matching deliveries that were
// running when it was called.
type waiter struct {
	remaining int
	done      chan struct{}
	then      func() // run when done is closed, under Dispatcher.mu; may be nil
}

// finish closes done and runs then. It is called once, under
// Dispatcher.mu, when remaining reached 0.
func (w *waiter) finish() {
	close(w.done)
	if w.then != nil {
		w.then()
	}
}

// Remove drops every delivery for which match returns true and that is not
// running: queued and ready ones, claimed ones no worker has started, and
// ones waiting for a redelivery backoff. Matching deliveries that are
// running finish normally: their handler context is not cancelled, a
// success is still reported to the settle callback and an error to the
// error observer, but they are not retried after an error. The returned
// channel is closed when no matching delivery is running any more. Remove
// itself does not wait and cancels nothing; bounding the wait (the drain
// timeout of a revocation) is the caller's business. Dropped deliveries
// are not settled: the broker delivers them again to whoever consumes
// their partition or queue next.
//
// match is called under the dispatcher's lock, also for running
// deliveries, so it must be quick, must not call the Dispatcher, and
// should read only Ref and what no handler writes (a running handler may
// be changing Msg).
func (d *Dispatcher) Remove(match func(*Delivery) bool) <-chan struct{} {
	return d.remove(match, nil)
}

// remove is Remove, running then (under d.mu; it must be quick and must
// not call the Dispatcher) when the returned channel is closed.
func (d *Dispatcher) remove(match func(*Delivery) bool, then func()) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := &waiter{done: make(chan struct{}), then: then}
	var gone []*Delivery // removed keyless deliveries and keyed heads

	// Claimed: take the ones not started yet (claimed -> gone); wait for
	// the running ones and mark them dropped.
	for _, wk := range d.workers {
		for _, dl := range wk.items {
			if dl == nil || dl.state != sClaimed || !match(dl) {
				continue
			}
			if dl.taken.CompareAndSwap(false, true) {
				d.inflight--
				dl.state = sGone
				gone = append(gone, dl)
				continue
			}
			ws := d.waiting[dl]
			if len(ws) > 0 && ws[len(ws)-1] == w {
				continue // seen in another claim that holds it too
			}
			dl.dropped = true
			d.waiting[dl] = append(ws, w)
			w.remaining++
		}
	}
	// Ready -> gone.
	kept := d.ready[:d.readyHd]
	for _, dl := range d.ready[d.readyHd:] {
		if match(dl) {
			dl.state = sGone
			gone = append(gone, dl)
			continue
		}
		kept = append(kept, dl)
	}
	clear(d.ready[len(kept):])
	d.ready = kept
	// Backing off -> gone; the timer is stopped (and ignored should it
	// have fired already: the state is no longer sBackoff).
	for dl, t := range d.backoffs {
		if match(dl) {
			t.Stop()
			delete(d.backoffs, dl)
			dl.state = sGone
			gone = append(gone, dl)
		}
	}
	// Queued -> gone. The heads removed above (state sGone) leave their
	// queues here too; a queue whose head left makes its new head ready.
	removed := len(gone)
	for _, q := range d.keys {
		items := q.items[:q.head]
		for _, dl := range q.items[q.head:] {
			if dl.state == sGone {
				continue // a removed head
			}
			if dl.state == sQueued && match(dl) {
				dl.state = sGone
				removed++
				continue
			}
			items = append(items, dl)
		}
		clear(q.items[len(items):])
		q.items = items
		switch {
		case q.head == len(q.items):
			d.retire(q)
		case q.items[q.head].state == sQueued && !d.stopping:
			d.pushReady(q.items[q.head]) // its head was removed
		}
	}
	d.releaseLocked(removed)
	d.wakeLocked()
	if d.stopping && d.inflight == 0 {
		d.idle.Broadcast()
	}
	if w.remaining == 0 {
		w.finish()
	}
	return w.done
}

// Shutdown stops intake (Submit returns ErrStopped), drops queued, ready
// and backing-off deliveries without settling them, and waits for running
// handlers: first for the drain timeout with their context intact, then
// with it cancelled until they return. Claimed deliveries that no worker
// has started are abandoned, not run. When Shutdown returns no handler
// runs and no settle callback or error observer will be called. It is
// safe to call more than once; later calls wait like the first.
//
// The dropped deliveries are left where they are, so Pending still counts
// them: the Dispatcher is finished, and the broker redelivers them.
func (d *Dispatcher) Shutdown() {
	d.shutOnce.Do(func() {
		d.mu.Lock()
		d.stopping = true
		d.stopped.Store(true)
		close(d.stopCh)
		for dl, t := range d.backoffs {
			t.Stop()
			delete(d.backoffs, dl)
		}
		d.work.Broadcast()
		if d.bat != nil {
			d.bat.wake.Broadcast() // the filling worker
		}
		drained := make(chan struct{})
		go func() {
			d.mu.Lock()
			for d.inflight > 0 {
				d.idle.Wait()
			}
			d.mu.Unlock()
			close(drained)
		}()
		d.mu.Unlock()

		t := time.NewTimer(d.cfg.DrainTimeout)
		select {
		case <-drained:
			t.Stop()
		case <-t.C:
			d.hcancel()
			<-drained
		}
		d.hcancel()
		d.wg.Wait()
	})
	d.wg.Wait()
}
