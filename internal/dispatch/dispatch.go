package dispatch

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
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

// Delivery is one message handed to the dispatcher.
type Delivery struct {
	// Msg is passed to the handler. Its Delivery.Attempt is incremented
	// before each redelivery.
	Msg *message.Message
	// Ref is the adapter's handle (partition and offset, delivery tag).
	Ref any

	failures int
	running  bool
	dropped  bool // removed while running: do not retry on failure
	waiters  []*waiter
}

type waiter struct {
	remaining int
	done      chan struct{}
}

type queue struct {
	key   string
	items []*Delivery
	head  int
	state int // qReady, qRunning, qBackoff, qDead
	timer *time.Timer
	keyed bool
	gen   uint64 // incremented when the queue is recycled

	prev, next *queue // links in the list of live keyless queues
}

const (
	qReady = iota
	qRunning
	qBackoff
	qDead
)

// Dispatcher runs a handler over submitted deliveries. Create it with New.
type Dispatcher struct {
	h       message.Handler
	cfg     Config
	settled func(*Delivery)

	hctx    context.Context
	hcancel context.CancelFunc

	mu       sync.Mutex
	work     *sync.Cond
	keys     map[string]*queue
	free     []*queue // dead queues for reuse
	loose    *queue   // list of live keyless queues
	ready    []*queue
	readyHd  int
	pending  int
	inflight int
	backoffs map[*queue]struct{}
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
		backoffs: make(map[*queue]struct{}),
		space:    make(chan struct{}, 1),
		stopCh:   make(chan struct{}),
	}
	d.hctx, d.hcancel = context.WithCancel(context.WithoutCancel(parent))
	d.work = sync.NewCond(&d.mu)
	d.idle = sync.NewCond(&d.mu)
	d.wg.Add(cfg.Concurrency)
	for range cfg.Concurrency {
		go d.worker()
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
	for {
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			return ErrStopped
		}
		if d.pending < d.cfg.MaxPending {
			d.enqueueLocked(dl)
			if d.pending < d.cfg.MaxPending {
				d.signalSpace()
			}
			d.mu.Unlock()
			return nil
		}
		d.mu.Unlock()
		select {
		case <-d.space:
		case <-ctx.Done():
			return ctx.Err()
		case <-d.stopCh:
			return ErrStopped
		}
	}
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

func (d *Dispatcher) enqueueLocked(dl *Delivery) {
	d.pending++
	key := dl.Msg.Key
	if key != "" {
		if q := d.keys[key]; q != nil {
			q.items = append(q.items, dl)
			return
		}
	}
	q := d.newQueue()
	q.items = append(q.items, dl)
	if key != "" {
		q.key, q.keyed = key, true
		d.keys[key] = q
	} else {
		q.next = d.loose
		if d.loose != nil {
			d.loose.prev = q
		}
		d.loose = q
	}
	d.pushReady(q)
}

// newQueue takes a queue from the free list or allocates one. Recycling is
// safe although the ready list may still hold a queue that died: popReady
// runs only queues in state qReady, and a ready queue always has an entry
// of its own in the list.
func (d *Dispatcher) newQueue() *queue {
	if n := len(d.free); n > 0 {
		q := d.free[n-1]
		d.free[n-1] = nil
		d.free = d.free[:n-1]
		return q
	}
	return &queue{}
}

// recycle puts a dead queue on the free list.
func (d *Dispatcher) recycle(q *queue) {
	if len(d.free) >= d.cfg.MaxPending {
		return
	}
	items := q.items[:0]
	if cap(items) > 64 {
		items = nil
	}
	*q = queue{items: items, state: qDead, gen: q.gen + 1}
	d.free = append(d.free, q)
}

func (d *Dispatcher) pushReady(q *queue) {
	q.state = qReady
	d.ready = append(d.ready, q)
	d.work.Signal()
}

func (d *Dispatcher) popReady() *queue {
	for d.readyHd < len(d.ready) {
		q := d.ready[d.readyHd]
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
		if q.state == qReady {
			return q
		}
	}
	return nil
}

func (d *Dispatcher) worker() {
	defer d.wg.Done()
	d.mu.Lock()
	for {
		var q *queue
		for {
			if d.stopping {
				d.mu.Unlock()
				return
			}
			if q = d.popReady(); q != nil {
				break
			}
			d.work.Wait()
		}
		dl := q.items[q.head]
		q.state = qRunning
		dl.running = true
		d.inflight++
		d.mu.Unlock()

		if dl.Msg.Delivery.Attempt < 1 {
			dl.Msg.Delivery.Attempt = 1
		}
		err := message.Call(d.hctx, d.h, dl.Msg)
		if err == nil && d.settled != nil {
			d.settled(dl)
		}

		d.mu.Lock()
		d.inflight--
		dl.running = false
		if err != nil && d.cfg.OnError != nil {
			d.cfg.OnError(dl, err)
		}
		if err != nil && !dl.dropped && !d.stopping {
			dl.failures++
			dl.Msg.Delivery.Attempt++
			q.state = qBackoff
			d.backoffs[q] = struct{}{}
			qq, gen := q, q.gen
			q.timer = time.AfterFunc(d.cfg.Backoff.Delay(dl.failures), func() { d.backoffDone(qq, gen) })
		} else {
			// Settled, dropped by Remove, or abandoned by Shutdown (not
			// settled: the broker redelivers it later).
			d.popHeadLocked(q)
		}
		for _, w := range dl.waiters {
			w.remaining--
			if w.remaining == 0 {
				close(w.done)
			}
		}
		dl.waiters = nil
		if d.stopping && d.inflight == 0 {
			d.idle.Broadcast()
		}
	}
}

// popHeadLocked removes q's head delivery and schedules q's next one.
func (d *Dispatcher) popHeadLocked(q *queue) {
	q.items[q.head] = nil
	q.head++
	d.releaseLocked(1)
	d.advanceLocked(q)
}

// advanceLocked makes q ready if it has items, or retires it.
func (d *Dispatcher) advanceLocked(q *queue) {
	if q.head >= len(q.items) {
		q.state = qDead
		if !q.keyed {
			if q.prev != nil {
				q.prev.next = q.next
			} else if d.loose == q {
				d.loose = q.next
			}
			if q.next != nil {
				q.next.prev = q.prev
			}
			q.prev, q.next = nil, nil
		} else if d.keys[q.key] == q {
			delete(d.keys, q.key)
		}
		d.recycle(q)
		return
	}
	if q.head > 64 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	if !d.stopping {
		d.pushReady(q)
	}
}

func (d *Dispatcher) releaseLocked(n int) {
	if n == 0 {
		return
	}
	d.pending -= n
	if d.pending < d.cfg.MaxPending {
		d.signalSpace()
	}
}

func (d *Dispatcher) backoffDone(q *queue, gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if q.state != qBackoff || q.gen != gen {
		return
	}
	delete(d.backoffs, q)
	q.timer = nil
	if d.stopping {
		return
	}
	d.pushReady(q)
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
	visit := func(q *queue) {
		if q.state == qDead {
			return
		}
		head := q.items[q.head]
		kept := q.items[:q.head]
		removed := 0
		for _, dl := range q.items[q.head:] {
			if !match(dl) {
				kept = append(kept, dl)
				continue
			}
			if dl.running {
				dl.dropped = true
				dl.waiters = append(dl.waiters, w)
				w.remaining++
				kept = append(kept, dl)
				continue
			}
			removed++
		}
		clear(q.items[len(kept):])
		q.items = kept
		d.releaseLocked(removed)
		if removed == 0 {
			return
		}
		switch q.state {
		case qBackoff:
			// The head was waiting for its redelivery; if it was removed
			// the queue moves on.
			if q.head >= len(q.items) || q.items[q.head] != head {
				if q.timer != nil {
					q.timer.Stop()
					q.timer = nil
				}
				delete(d.backoffs, q)
				d.advanceLocked(q)
			}
		case qReady:
			if q.head >= len(q.items) {
				d.advanceLocked(q) // retires it; popReady skips dead queues
			}
		}
	}
	for _, q := range d.keys {
		visit(q)
	}
	for q := d.loose; q != nil; {
		next := q.next // visit may unlink q
		visit(q)
		q = next
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
		close(d.stopCh)
		for q := range d.backoffs {
			if q.timer != nil {
				q.timer.Stop()
				q.timer = nil
			}
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
