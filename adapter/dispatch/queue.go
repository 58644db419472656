package dispatch

// Delivery states (Delivery.state), changed under the dispatcher's lock.
// The package doc's table lists the transitions; claimed and running are
// both sClaimed and told apart by Delivery.taken.
const (
	sQueued  = iota // in its key's queue behind the head
	sReady          // in the ready list (keyed: its queue's head)
	sClaimed        // in a worker's claim: not started (taken false) or running (taken true)
	sBackoff        // its queue's head, waiting for its redelivery timer
	sGone           // settled, removed or abandoned; final
)

// queue holds the accepted deliveries of one key in order, from items[head]
// on. Only the head is ever ready, claimed, running or backing off; the
// ones behind it are queued. Entries before head are nil.
type queue struct {
	key   string
	items []*Delivery
	head  int
	fill  *fill // batch.go: the filling batch holding all of items[head:]; nil otherwise
}

// enqueueLocked accepts dl: (submitted) -> ready for a keyless delivery or
// the first of its key, (submitted) -> queued behind the key's head
// otherwise.
func (d *Dispatcher) enqueueLocked(dl *Delivery) {
	d.pending++
	key := dl.Msg.Key
	if key == "" {
		dl.q = nil
		d.pushReady(dl)
		return
	}
	if q := d.keys[key]; q != nil {
		if q.fill != nil && d.appendFillLocked(q, dl) {
			return
		}
		dl.q, dl.state = q, sQueued
		q.items = append(q.items, dl)
		return
	}
	q := d.newQueue()
	q.key = key
	q.items = append(q.items, dl)
	d.keys[key] = q
	dl.q = q
	d.pushReady(dl)
}

// newQueue takes a queue from the free list or allocates one.
func (d *Dispatcher) newQueue() *queue {
	if n := len(d.free); n > 0 {
		q := d.free[n-1]
		d.free[n-1] = nil
		d.free = d.free[:n-1]
		return q
	}
	return &queue{}
}

// retire forgets an empty queue and keeps it for reuse.
func (d *Dispatcher) retire(q *queue) {
	if d.keys[q.key] == q {
		delete(d.keys, q.key)
	}
	if len(d.free) >= d.cfg.MaxPending {
		return
	}
	items := q.items[:0]
	if cap(items) > 64 {
		items = nil
	}
	*q = queue{items: items}
	d.free = append(d.free, q)
}

// pushReady appends dl to the ready list: queued or backing off -> ready.
func (d *Dispatcher) pushReady(dl *Delivery) {
	dl.state = sReady
	d.ready = append(d.ready, dl)
}

// popReady takes the oldest ready delivery; the caller marks it claimed.
func (d *Dispatcher) popReady() *Delivery {
	dl := d.ready[d.readyHd]
	d.ready[d.readyHd] = nil
	d.readyHd++
	if d.readyHd == len(d.ready) {
		d.ready = d.ready[:0]
		d.readyHd = 0
	} else if d.readyHd > 1024 && d.readyHd*2 > len(d.ready) {
		n := copy(d.ready, d.ready[d.readyHd:])
		clear(d.ready[n:])
		d.ready = d.ready[:n]
		d.readyHd = 0
	}
	return dl
}

// finishLocked lets dl go (settled, dropped or abandoned): running -> gone.
// It releases dl's place in the pending count and makes the next delivery
// of its key ready.
func (d *Dispatcher) finishLocked(dl *Delivery) {
	dl.state = sGone
	d.releaseLocked(1)
	q := dl.q
	if q == nil {
		return
	}
	q.items[q.head] = nil
	q.head++
	d.advanceLocked(q)
}

// advanceLocked makes q's new head ready (queued -> ready), unless shutdown
// began, or retires q when it is empty.
func (d *Dispatcher) advanceLocked(q *queue) {
	if q.head >= len(q.items) {
		d.retire(q)
		return
	}
	if q.head > 64 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	if !d.stopping {
		d.pushReady(q.items[q.head])
	}
}
