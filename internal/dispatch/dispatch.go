package dispatch

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// ErrStopped is returned by Submit after Shutdown began.
var ErrStopped = errors.New("dispatch: stopped")

// Defaults for Config's zero values.
const (
	DefaultConcurrency    = 1
	DefaultMaxPending     = 4096
	DefaultInitialBackoff = 100 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	DefaultMultiplier     = 2.0
	DefaultDrainTimeout   = 30 * time.Second
)

// maxClaim bounds how many ready deliveries a worker takes under one lock.
const maxClaim = 64

// Backoff is the redelivery backoff after a handler error: Initial after the
// first failure, multiplied by Multiplier after each further failure, capped
// at Max, with ±20% jitter.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
}

// Delay returns the backoff before redelivery after the given number of
// consecutive failures (1 for the first).
func (b Backoff) Delay(failures int) time.Duration {
	d := float64(b.Initial)
	for i := 1; i < failures && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	if d > float64(b.Max) {
		d = float64(b.Max)
	}
	d *= 0.8 + 0.4*rand.Float64()
	return time.Duration(d)
}

// Config configures a Dispatcher. Zero values take the defaults above.
type Config struct {
	// Concurrency is the maximum number of handlers running at once.
	Concurrency int
	// MaxPending bounds the deliveries accepted and not yet settled; Submit
	// blocks beyond it.
	MaxPending int
	// Backoff is the redelivery backoff after a handler error.
	Backoff Backoff
	// DrainTimeout is how long Shutdown and Remove callers let in-flight
	// handlers run before their context is cancelled.
	DrainTimeout time.Duration
	// OnError, when set, observes each handler error (for logging). It runs
	// on the worker goroutine and must not block.
	OnError func(d *Delivery, err error)
}

func (c *Config) fill() {
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxPending < c.Concurrency {
		c.MaxPending = c.Concurrency
	}
	if c.Backoff.Initial <= 0 {
		c.Backoff.Initial = DefaultInitialBackoff
	}
	if c.Backoff.Max <= 0 {
		c.Backoff.Max = DefaultMaxBackoff
	}
	if c.Backoff.Max < c.Backoff.Initial {
		c.Backoff.Max = c.Backoff.Initial
	}
	if c.Backoff.Multiplier < 1 {
		c.Backoff.Multiplier = DefaultMultiplier
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
}

// Delivery is one message handed to the dispatcher. A Delivery must not be
// submitted again once accepted.
type Delivery struct {
	// Msg is passed to the handler. Its Delivery.Attempt is incremented
	// before each redelivery.
	Msg *message.Message
	// Ref is the adapter's handle (partition and offset, delivery tag).
	Ref any

	q        *queue // its key's queue; nil when the key is empty
	failures int32
	gen      uint32      // counts backoffs, so a stale timer is ignored
	taken    atomic.Bool // a claimed delivery was started, skipped or removed
	state    uint8
	dropped  bool // removed while running: do not retry on failure
}

// Delivery states, changed under the dispatcher's lock.
const (
	sQueued  = iota // in its key's queue behind the head
	sReady          // in the ready list
	sClaimed        // taken by a worker: running, or about to run
	sBackoff        // waiting for its redelivery
	sGone           // settled, removed or abandoned
)

// queue holds the accepted deliveries of one key in order; only its head
// is ever ready, claimed or backing off.
type queue struct {
	key   string
	items []*Delivery
	head  int
}

// worker is one handler goroutine's claim: the deliveries it took from the
// ready list under one lock, run in order. An idle worker may steal a
// delivery another worker claimed but has not started, so a slow handler
// holds up nothing but its own delivery. Whoever flips a claimed
// delivery's taken flag first (its worker, a thief or Remove) runs or
// drops it and completes it.
type worker struct {
	idx    int
	items  []*Delivery // nil once completed
	stolen bool        // items is one delivery taken (flag already set) from another worker
	// started counts the deliveries this worker started; seen holds the
	// other workers' counts and when this worker first saw them, so it can
	// tell a worker stuck in one handler from one working through its
	// claim (or merely not scheduled for a moment).
	started atomic.Uint64
	seen    []seenCount
}

type seenCount struct {
	n  uint64
	at time.Time
}

// stallAfter is how long a worker may go without starting a delivery while
// it holds claimed, unstarted ones before other workers take them.
const stallAfter = time.Millisecond

// errAbandoned is the result of a claimed delivery not run because
// shutdown began.
var errAbandoned = errors.New("abandoned at shutdown")

type waiter struct {
	remaining int
	done      chan struct{}
}

// Dispatcher runs a handler over submitted deliveries. Create it with New.
type Dispatcher struct {
	h       message.Handler
	cfg     Config
	settled func(*Delivery)

	hctx    context.Context
	hcancel context.CancelFunc
	stopped atomic.Bool // mirrors stopping for the workers' unlocked checks

	mu       sync.Mutex
	work     *sync.Cond
	idleN    int // workers waiting on work
	keys     map[string]*queue
	free     []*queue // retired queues for reuse
	ready    []*Delivery
	readyHd  int
	pending  int
	inflight int // claimed deliveries not yet completed
	workers  []*worker
	backoffs map[*Delivery]*time.Timer
	waiting  map[*Delivery][]*waiter // Remove calls waiting for a running delivery
	stopping bool
	idle     *sync.Cond // signalled when inflight drops to 0 during shutdown
	space    chan struct{}
	stopCh   chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once
}

// New starts a Dispatcher with cfg.Concurrency workers. Handlers run with a
// context that carries parent's values but is cancelled only by Shutdown
// after the drain timeout. settled is called, on a worker goroutine, for
// each delivery whose handler returned nil; it may be nil.
func New(parent context.Context, h message.Handler, cfg Config, settled func(*Delivery)) *Dispatcher {
	cfg.fill()
	d := &Dispatcher{
		h:        h,
		cfg:      cfg,
		settled:  settled,
		keys:     make(map[string]*queue),
		backoffs: make(map[*Delivery]*time.Timer),
		waiting:  make(map[*Delivery][]*waiter),
		space:    make(chan struct{}, 1),
		stopCh:   make(chan struct{}),
	}
	d.hctx, d.hcancel = context.WithCancel(context.WithoutCancel(parent))
	d.work = sync.NewCond(&d.mu)
	d.idle = sync.NewCond(&d.mu)
	d.workers = make([]*worker, cfg.Concurrency)
	d.wg.Add(cfg.Concurrency)
	for i := range d.workers {
		d.workers[i] = &worker{idx: i, seen: make([]seenCount, cfg.Concurrency)}
	}
	for _, w := range d.workers {
		go d.run(w)
	}
	return d
}

// Config returns the effective configuration (defaults filled in).
func (d *Dispatcher) Config() Config { return d.cfg }

// Submit hands a delivery to the dispatcher. It blocks while MaxPending
// deliveries are outstanding, until there is room, ctx is done (ctx.Err())
// or Shutdown begins (ErrStopped). A delivery with an empty Msg.Key has no
// ordering constraint.
func (d *Dispatcher) Submit(ctx context.Context, dl *Delivery) error {
	_, err := d.SubmitBatch(ctx, []*Delivery{dl})
	return err
}

// SubmitBatch hands over dls in order, taking the lock once for as many as
// there is room for. Like Submit it blocks while the dispatcher is full. It
// returns how many it accepted: all of them, unless ctx ended (ctx.Err())
// or Shutdown began (ErrStopped); the caller may resubmit the rest.
func (d *Dispatcher) SubmitBatch(ctx context.Context, dls []*Delivery) (int, error) {
	n := 0
	for {
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			return n, ErrStopped
		}
		for n < len(dls) && d.pending < d.cfg.MaxPending {
			d.enqueueLocked(dls[n])
			n++
		}
		if d.pending < d.cfg.MaxPending {
			d.signalSpace()
		}
		d.wakeLocked()
		d.mu.Unlock()
		if n == len(dls) {
			return n, nil
		}
		select {
		case <-d.space:
		case <-ctx.Done():
			return n, ctx.Err()
		case <-d.stopCh:
			return n, ErrStopped
		}
	}
}

// Pending returns the number of deliveries accepted and not yet settled or
// removed.
func (d *Dispatcher) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending
}

// Space returns a channel that receives a value after the number of pending
// deliveries dropped below MaxPending. An adapter that checks Pending
// before fetching waits on it when the dispatcher is full. The channel is
// shared with Submit: use one or the other from one goroutine.
func (d *Dispatcher) Space() <-chan struct{} { return d.space }

func (d *Dispatcher) signalSpace() {
	select {
	case d.space <- struct{}{}:
	default:
	}
}

// wakeLocked wakes an idle worker when there is work for it. A woken
// worker wakes the next one if work remains after its claim.
func (d *Dispatcher) wakeLocked() {
	if d.idleN > 0 && len(d.ready) > d.readyHd {
		d.work.Signal()
	}
}

func (d *Dispatcher) enqueueLocked(dl *Delivery) {
	d.pending++
	key := dl.Msg.Key
	if key == "" {
		dl.q = nil
		d.pushReady(dl)
		return
	}
	if q := d.keys[key]; q != nil {
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

func (d *Dispatcher) pushReady(dl *Delivery) {
	dl.state = sReady
	d.ready = append(d.ready, dl)
}

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

// run is a worker goroutine: it claims ready deliveries, runs them and
// completes each, taking the lock once per delivery.
func (d *Dispatcher) run(w *worker) {
	defer d.wg.Done()
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

// claimLocked fills w with ready deliveries, a fair share of what is ready
// (at most maxClaim), or else with one delivery stolen from another
// worker's claim. It reports whether w got any.
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
		for _, dl := range o.items {
			if dl != nil && dl.state == sClaimed && !dl.taken.Load() && dl.taken.CompareAndSwap(false, true) {
				return dl
			}
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
		for _, dl := range o.items {
			if dl != nil && dl.state == sClaimed && !dl.taken.Load() && dl.taken.CompareAndSwap(false, true) {
				return dl
			}
		}
	}
	return nil
}

// runClaim runs w's deliveries, skipping those another took first and all
// of them once shutdown began. Each is completed as soon as it ran, so the
// next delivery of its key becomes ready at once. It returns with d.mu
// held.
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
			continue
		case d.stopped.Load():
			err = errAbandoned
		default:
			w.started.Add(1)
			if dl.Msg.Delivery.Attempt < 1 {
				dl.Msg.Delivery.Attempt = 1
			}
			err = message.Call(d.hctx, d.h, dl.Msg)
			if err == nil && d.settled != nil {
				d.settled(dl)
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

// completeLocked applies the outcome of a delivery a worker took:
// settled ones leave, failed ones back off and come back first in their
// key, and the next delivery of its key becomes ready.
func (d *Dispatcher) completeLocked(dl *Delivery, err error) {
	d.inflight--
	switch {
	case err == errAbandoned:
		d.finishLocked(dl) // not settled: the broker redelivers it later
	case err != nil:
		if d.cfg.OnError != nil {
			d.cfg.OnError(dl, err)
		}
		if dl.dropped || d.stopping {
			d.finishLocked(dl)
		} else {
			d.backoffLocked(dl)
		}
	default:
		d.finishLocked(dl)
	}
	if len(d.waiting) > 0 {
		if ws, ok := d.waiting[dl]; ok {
			delete(d.waiting, dl)
			for _, wt := range ws {
				if wt.remaining--; wt.remaining == 0 {
					close(wt.done)
				}
			}
		}
	}
	if d.stopping && d.inflight == 0 {
		d.idle.Broadcast()
	}
}

// backoffLocked schedules dl's redelivery. Its key's later deliveries wait
// behind it; other keys go on.
func (d *Dispatcher) backoffLocked(dl *Delivery) {
	dl.failures++
	dl.Msg.Delivery.Attempt++
	dl.state = sBackoff
	dl.gen++
	gen := dl.gen
	d.backoffs[dl] = time.AfterFunc(d.cfg.Backoff.Delay(int(dl.failures)), func() { d.backoffDone(dl, gen) })
}

func (d *Dispatcher) backoffDone(dl *Delivery, gen uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dl.state != sBackoff || dl.gen != gen {
		return
	}
	delete(d.backoffs, dl)
	if d.stopping {
		return
	}
	d.pushReady(dl)
	d.wakeLocked()
}

// finishLocked lets dl go (settled, dropped or abandoned) and makes the
// next delivery of its key ready.
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

// advanceLocked makes q's head ready, or retires q when it is empty.
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

func (d *Dispatcher) releaseLocked(n int) {
	if n == 0 {
		return
	}
	full := d.pending >= d.cfg.MaxPending
	d.pending -= n
	// Submit and Space users wait only while the dispatcher is full, so
	// only the step from full to not full needs a signal.
	if full && d.pending < d.cfg.MaxPending {
		d.signalSpace()
	}
}

// Remove drops every delivery for which match returns true and that is not
// running: queued ones and ones waiting for a redelivery backoff. Matching
// deliveries that are running finish normally (a success is still reported
// to the settle callback) but are not retried after an error. The returned
// channel is closed when no matching delivery is running any more. Dropped
// deliveries are not settled: the broker delivers them again to whoever
// consumes their partition or queue next.
func (d *Dispatcher) Remove(match func(*Delivery) bool) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := &waiter{done: make(chan struct{})}
	var gone []*Delivery // removed keyless deliveries and keyed heads

	// Claimed: take the ones not started yet; wait for the running ones.
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
				continue // seen in the claim it was stolen from
			}
			dl.dropped = true
			d.waiting[dl] = append(ws, w)
			w.remaining++
		}
	}
	// Ready.
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
	// Backing off.
	for dl, t := range d.backoffs {
		if match(dl) {
			t.Stop()
			delete(d.backoffs, dl)
			dl.state = sGone
			gone = append(gone, dl)
		}
	}
	// Queued behind their key's head.
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
		close(w.done)
	}
	return w.done
}

// Shutdown stops intake (Submit returns ErrStopped), drops queued and
// backing-off deliveries without settling them, and waits for running
// handlers: first for the drain timeout with their context intact, then
// with it cancelled until they return. When Shutdown returns no handler
// runs and no settle callback will be called. It is safe to call more than
// once; later calls wait like the first.
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
