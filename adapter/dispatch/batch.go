package dispatch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// Batch, set as Config.Batch, makes a Dispatcher a batch dispatcher: its
// workers cut batches from the keyed queues and hand each to Handler
// instead of running a message.Handler per delivery. See "# Batches" in
// the package doc.
type Batch struct {
	// Handler is called with each batch. It must not be nil.
	Handler message.BatchHandler
	// Limits of one batch (message.NewBatchConfig gives the defaults):
	// at most MaxMessages deliveries, at most MaxBytes of payload (a
	// single larger delivery is a batch of its own), and a batch that is
	// not full is handed over MaxWait after it started filling. Zero or
	// negative MaxMessages and MaxBytes take message's defaults; a zero
	// MaxWait hands over at once what is ready.
	Limits message.BatchConfig
	// Settled, when set, is called once per batch, on the worker
	// goroutine and outside the lock, with the deliveries the batch
	// settled, in batch order (never empty), instead of the Dispatcher's
	// per-delivery settle callback. amqp acks them with multiple where
	// they are contiguous.
	Settled func([]*Delivery)
}

// batcher is a batch dispatcher's state, guarded by Dispatcher.mu.
type batcher struct {
	cfg     Batch
	filling *fill      // the batch being filled; nil when no worker fills one
	wake    *sync.Cond // the filling worker waits on it for more
}

// fill is one batch: while it fills, the deliveries it took are running
// (sClaimed, taken set) in its worker's claim, so Remove waits for them
// and Shutdown abandons them.
type fill struct {
	w        *worker
	n, bytes int
	full     bool
	expired  bool
	qs       []*queue // queues whose every delivery is in the batch (q.fill == f)
}

func newBatcher(d *Dispatcher, b *Batch) *batcher {
	if b.Limits.MaxMessages <= 0 {
		b.Limits.MaxMessages = message.DefaultBatchMaxMessages
	}
	if b.Limits.MaxBytes <= 0 {
		b.Limits.MaxBytes = message.DefaultBatchMaxBytes
	}
	if b.Limits.MaxWait < 0 {
		b.Limits.MaxWait = 0
	}
	return &batcher{cfg: *b, wake: sync.NewCond(&d.mu)}
}

// fits reports whether dl may join f without passing a limit.
func (b *batcher) fits(f *fill, dl *Delivery) bool {
	if f.n >= b.cfg.Limits.MaxMessages {
		return false
	}
	return f.n == 0 || f.bytes+len(dl.Msg.Payload) <= b.cfg.Limits.MaxBytes
}

// takeLocked puts dl into f: ready or queued -> running.
func (d *Dispatcher) takeLocked(f *fill, dl *Delivery) {
	dl.state = sClaimed
	dl.taken.Store(true)
	d.inflight++
	f.w.items = append(f.w.items, dl)
	f.n++
	f.bytes += len(dl.Msg.Payload)
	if f.n >= d.bat.cfg.Limits.MaxMessages {
		f.full = true
	}
}

// fillLocked moves ready deliveries into f, each keyed one with the
// deliveries queued behind it (its key's queue, in order), until f is
// full or nothing is ready. A queue taken whole stays open (q.fill): a
// delivery of its key submitted while f fills joins f (appendFillLocked).
func (d *Dispatcher) fillLocked(f *fill) {
	b := d.bat
	for !f.full && d.readyHd < len(d.ready) {
		dl := d.ready[d.readyHd]
		if !b.fits(f, dl) {
			f.full = true
			break
		}
		d.popReady()
		d.takeLocked(f, dl)
		q := dl.q
		if q == nil {
			continue
		}
		i := q.head + 1 // dl is q's head: only heads are ready
		for ; i < len(q.items) && !f.full; i++ {
			nx := q.items[i]
			if !b.fits(f, nx) {
				f.full = true
				break
			}
			d.takeLocked(f, nx)
		}
		if i == len(q.items) && !f.full {
			q.fill = f
			f.qs = append(f.qs, q)
		}
	}
}

// appendFillLocked is enqueueLocked's hook for a key whose queue is
// wholly in the batch being filled: dl joins that batch if it fits
// (reported true; dl is then in the queue and running), else the queue is
// closed to the batch and dl is queued as usual (false). d.pending was
// counted already.
func (d *Dispatcher) appendFillLocked(q *queue, dl *Delivery) bool {
	f := q.fill
	if f != d.bat.filling || f.full || !d.bat.fits(f, dl) {
		q.fill = nil
		if f == d.bat.filling && !f.full {
			f.full = true
			d.bat.wake.Signal()
		}
		return false
	}
	dl.q = q
	q.items = append(q.items, dl)
	d.takeLocked(f, dl)
	if f.full {
		d.bat.wake.Signal()
	}
	return true
}

// wakeBatchLocked is wakeLocked for a batch dispatcher: new ready
// deliveries go to the batch being filled, or else start one on an idle
// worker. While the batch's payloads are small enough for MaxMessages to
// bind first, the filling worker is woken only once enough deliveries
// wait to fill it by count (those not in flight: ready, queued or backing
// off, an overestimate of what it can take), so that a trickle of submits
// does not wake it once per delivery; once its average payload would fill
// MaxBytes first, at every submit. (A batch of small payloads that one
// large late payload would fill by bytes is handed over at the next wake
// or when its wait is over.)
func (d *Dispatcher) wakeBatchLocked() {
	switch f := d.bat.filling; {
	case f != nil:
		need := d.bat.cfg.Limits.MaxMessages - f.n
		if avg := f.bytes / max(f.n, 1); avg > 0 {
			// Payloads of the batch's average size fill its bytes first.
			need = min(need, (d.bat.cfg.Limits.MaxBytes-f.bytes)/avg+1)
		}
		if d.pending-d.inflight >= need {
			d.bat.wake.Signal()
		}
	case d.idleN > 0 && len(d.ready) > d.readyHd:
		d.work.Signal()
	}
}

// runBatches is a batch dispatcher's worker goroutine: one worker at a
// time fills a batch (the filler); it hands over when the batch is full or
// its wait is over, runs it, and completes it. So up to Concurrency
// batches run at once, and the deliveries of a key are in at most one.
func (d *Dispatcher) runBatches(w *worker) {
	b := d.bat
	d.mu.Lock()
	for !d.stopping {
		if b.filling != nil || d.readyHd == len(d.ready) {
			d.idleN++
			d.work.Wait()
			d.idleN--
			continue
		}
		f := &fill{w: w}
		b.filling = f
		d.fillLocked(f)
		if !f.full && b.cfg.Limits.MaxWait > 0 {
			t := time.AfterFunc(b.cfg.Limits.MaxWait, func() {
				d.mu.Lock()
				f.expired = true
				b.wake.Broadcast()
				d.mu.Unlock()
			})
			for !f.full && !f.expired && !d.stopping {
				b.wake.Wait()
				d.fillLocked(f)
			}
			t.Stop()
		}
		for _, q := range f.qs {
			if q.fill == f {
				q.fill = nil
			}
		}
		b.filling = nil
		if d.idleN > 0 && len(d.ready) > d.readyHd {
			d.work.Signal() // the next filler
		}
		d.mu.Unlock()
		d.runBatch(w)
	}
	d.mu.Unlock()
}

// errCarried marks a delivery that succeeded (or was not judged) but
// follows a failed delivery of its key in the batch: it is redelivered
// with it, not settled.
var errCarried = errors.New("dispatch: carried with an earlier failure of its key")

// runBatch runs the batch in w.items (all running, owned by w) and
// completes it. It returns with d.mu held.
func (d *Dispatcher) runBatch(w *worker) {
	items := w.items
	var failed map[*Delivery]error
	if d.stopped.Load() {
		failed = make(map[*Delivery]error, len(items))
		for _, dl := range items {
			failed[dl] = errAbandoned
		}
	} else {
		w.started.Add(1)
		msgs := make([]*message.Message, len(items))
		for i, dl := range items {
			if dl.Msg.Delivery.Attempt < 1 {
				dl.Msg.Delivery.Attempt = 1
			}
			msgs[i] = dl.Msg
		}
		ctx, release := d.batchContext(items)
		err := adapter.CallBatch(ctx, d.bat.cfg.Handler, msgs)
		release()
		failed = d.settleBatch(items, message.BatchResults(err, len(items)))
	}
	d.mu.Lock()
	d.completeBatchLocked(items, failed)
	clear(w.items)
	w.items = w.items[:0]
}

// batchContext returns the context of a batch's handler: the scope's
// context when all its deliveries share one (or the dispatcher's when
// they have none), else one cancelled as soon as any of their scopes'
// is. release frees it.
func (d *Dispatcher) batchContext(items []*Delivery) (context.Context, func()) {
	first := items[0].Scope
	mixed := false
	for _, dl := range items[1:] {
		if dl.Scope != first {
			mixed = true
			break
		}
	}
	if !mixed {
		if first == nil {
			return d.hctx, func() {}
		}
		return first.ctx, func() {}
	}
	ctx, cancel := context.WithCancel(d.hctx)
	seen := make(map[*Scope]bool)
	var stops []func() bool
	for _, dl := range items {
		if s := dl.Scope; s != nil && !seen[s] {
			seen[s] = true
			stops = append(stops, context.AfterFunc(s.ctx, cancel))
		}
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// settleBatch applies a batch's results outside the lock: per key, the
// deliveries before its first failure settle (the settle callback), the
// failed ones are observed (OnError) and they and the later deliveries of
// their key are returned as not settled. errs is nil when all succeeded.
func (d *Dispatcher) settleBatch(items []*Delivery, errs []error) map[*Delivery]error {
	var failed map[*Delivery]error
	settled := items
	if errs != nil {
		failed = make(map[*Delivery]error)
		settled = make([]*Delivery, 0, len(items))
		var keys map[string]bool
		for i, dl := range items {
			key := dl.Msg.Key
			switch {
			case errs[i] != nil:
				failed[dl] = errs[i]
				if key != "" {
					if keys == nil {
						keys = make(map[string]bool)
					}
					keys[key] = true
				}
				if d.cfg.OnError != nil {
					d.cfg.OnError(dl, errs[i])
				}
			case key != "" && keys[key]:
				failed[dl] = errCarried
			default:
				settled = append(settled, dl)
			}
		}
	}
	if len(settled) == 0 {
		return failed
	}
	if fn := d.bat.cfg.Settled; fn != nil {
		fn(settled)
	} else if d.settled != nil {
		for _, dl := range settled {
			d.settled(dl)
		}
	}
	return failed
}

// completeBatchLocked ends a batch: settled deliveries go; failed ones
// back off (the first of its key stays its queue's head) unless dropped or
// stopping; carried ones are queued again behind their key's failed one.
// Abandoned ones (shutdown began before the batch ran) go, not settled.
func (d *Dispatcher) completeBatchLocked(items []*Delivery, failed map[*Delivery]error) {
	d.inflight -= len(items)
	released := 0
	var kept []*Delivery
	for _, dl := range items {
		if dl.state != sClaimed {
			continue // a keyed one done with its queue below
		}
		q := dl.q
		if q == nil {
			err, bad := failed[dl]
			if bad && err != errAbandoned && !dl.dropped && !d.stopping {
				d.backoffLocked(dl, err)
			} else {
				dl.state = sGone
				released++
			}
			d.batchWaitersLocked(dl)
			continue
		}
		// The key's deliveries in this batch are its queue's head and
		// those right behind it, in order.
		j0, j := q.head, q.head
		kept = kept[:0]
		for ; j < len(q.items) && q.items[j].state == sClaimed; j++ {
			x := q.items[j]
			err, bad := failed[x]
			if !bad || err == errAbandoned || x.dropped || d.stopping {
				x.state = sGone
				released++
			} else {
				kept = append(kept, x)
			}
			d.batchWaitersLocked(x)
		}
		head := j - len(kept)
		copy(q.items[head:j], kept)
		clear(q.items[j0:head])
		q.head = head
		if len(kept) == 0 {
			d.advanceLocked(q)
			continue
		}
		for i, x := range kept {
			err := failed[x]
			switch {
			case i == 0 && err != errCarried:
				d.backoffLocked(x, err)
			case i == 0:
				d.pushReady(x) // its key's failure was dropped
			default:
				x.state = sQueued
				if err != errCarried {
					x.failures++
					x.Msg.Delivery.Attempt++
				}
			}
		}
	}
	d.releaseLocked(released)
	if d.stopping && d.inflight == 0 {
		d.idle.Broadcast()
	}
	d.wakeLocked()
}

// batchWaitersLocked releases the Remove calls waiting for dl, as
// completeLocked does for a single delivery.
func (d *Dispatcher) batchWaitersLocked(dl *Delivery) {
	if len(d.waiting) == 0 {
		return
	}
	if ws, ok := d.waiting[dl]; ok {
		delete(d.waiting, dl)
		for _, wt := range ws {
			if wt.remaining--; wt.remaining == 0 {
				wt.finish()
			}
		}
	}
}
