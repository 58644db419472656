package dispatch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// ErrStopped is returned by Submit after Shutdown began.
var ErrStopped = errors.New("dispatch: stopped")

// Defaults for Config's zero values: those of adapter.SubscriberConfig,
// and a backoff that doubles.
const (
	DefaultConcurrency    = adapter.DefaultConcurrency
	DefaultMaxPending     = adapter.DefaultMaxPending
	DefaultInitialBackoff = adapter.DefaultInitialBackoff
	DefaultMaxBackoff     = adapter.DefaultMaxBackoff
	DefaultMultiplier     = 2.0
	DefaultDrainTimeout   = adapter.DefaultDrainTimeout
)

// Config configures a Dispatcher. Zero values take the defaults above.
type Config struct {
	// Concurrency is the maximum number of handlers running at once.
	// Default DefaultConcurrency (1).
	Concurrency int
	// MaxPending bounds the deliveries accepted and not yet settled; Submit
	// blocks beyond it. Default DefaultMaxPending (4096), and never less
	// than Concurrency.
	MaxPending int
	// Backoff is the redelivery backoff after a handler error. Defaults
	// DefaultInitialBackoff, DefaultMaxBackoff and DefaultMultiplier.
	Backoff Backoff
	// DrainTimeout is how long Shutdown lets in-flight handlers run before
	// it cancels their context, and Drain the handlers of a scope. Remove
	// does not use it and cancels nothing. Default DefaultDrainTimeout
	// (30s).
	DrainTimeout time.Duration
	// OnError, when set, observes each handler error (for logging); nil by
	// default. It runs on the worker goroutine right after the handler
	// returned the error, outside the dispatcher's lock and before the
	// redelivery is scheduled, so d is still owned by that worker and no
	// other goroutine changes it meanwhile: d.Msg.Delivery.Attempt is the
	// attempt that failed. It must not modify d nor keep d or d.Msg after
	// it returns (the redelivery increments Attempt). A slow observer holds
	// up only its own worker, like a slow handler: the delivery's key
	// waits, and so do Shutdown and a Remove that matches the delivery,
	// but other workers and Submit go on. It is not called for deliveries
	// abandoned at shutdown, which never ran.
	OnError func(d *Delivery, err error)
	// Batch, when set, makes the Dispatcher hand batches to a batch
	// handler (batch.go; New's handler is then unused and may be nil).
	// Nil by default.
	Batch *Batch
}

// ConfigFor returns the dispatcher configuration of a subscriber
// configured by sc: its concurrency, max pending, drain timeout, and a
// redelivery backoff doubling from sc.InitialBackoff to sc.MaxBackoff.
// Zero values of sc take the defaults, as in Config. OnError is left nil.
func ConfigFor(sc adapter.SubscriberConfig) Config {
	return Config{
		Concurrency:  sc.Concurrency,
		MaxPending:   sc.MaxPending,
		Backoff:      Backoff{Initial: sc.InitialBackoff, Max: sc.MaxBackoff, Multiplier: DefaultMultiplier},
		DrainTimeout: sc.DrainTimeout,
	}
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
	// Scope, when set, is the group of deliveries this one belongs to
	// (one assignment of a partition, one channel's deliveries): its
	// handler runs with the scope's context, and Drain acts on the scope's
	// deliveries together. Nil: the handler runs with the dispatcher's
	// context. It must come from this Dispatcher's NewScope.
	Scope *Scope

	// Guarded by Dispatcher.mu (see "Locks and ownership" in the package
	// doc).
	q        *queue // its key's queue; nil when the key is empty
	failures int32
	bo       *backoff.ExponentialBackOff // redelivery backoff, from the first failure on
	gen      uint32                      // counts backoffs, so a stale timer is ignored
	state    uint8                       // sQueued ... sGone, see queue.go
	dropped  bool                        // matched by Remove while running: do not retry on failure

	// taken decides who owns a claimed delivery: whoever flips it from
	// false to true (its worker, a thief or Remove) runs or drops it.
	taken atomic.Bool
}

// Dispatcher runs a handler over submitted deliveries. Create it with New.
type Dispatcher struct {
	// Set by New, then read-only.
	h       message.Handler
	cfg     Config
	settled func(*Delivery)
	hctx    context.Context
	hcancel context.CancelFunc
	space   chan struct{} // Submit and Space waiters: room again
	stopCh  chan struct{} // closed when Shutdown begins
	workers []*worker
	bat     *batcher // set for a batch dispatcher (Config.Batch)

	stopped  atomic.Bool // mirrors stopping for the workers' unlocked checks
	wg       sync.WaitGroup
	shutOnce sync.Once

	mu       sync.Mutex // guards the fields below, the workers' claims and the deliveries' state
	work     *sync.Cond // idle workers wait on it for ready deliveries
	idleN    int        // workers waiting on work
	keys     map[string]*queue
	free     []*queue // retired queues for reuse
	ready    []*Delivery
	readyHd  int
	pending  int // accepted deliveries not yet gone
	inflight int // claimed and running deliveries, each counted once
	backoffs map[*Delivery]*time.Timer
	waiting  map[*Delivery][]*waiter // Remove calls waiting for a running delivery
	stopping bool
	idle     *sync.Cond // signalled when inflight drops to 0 during shutdown
}

// New starts a Dispatcher with cfg.Concurrency workers. Handlers run with a
// context that carries parent's values but is cancelled only by Shutdown
// after the drain timeout (or, for a delivery with a Scope, also by Drain
// after the drain timeout). settled is called, on a worker goroutine and
// outside the dispatcher's lock, for each delivery whose handler returned
// nil; it may be nil.
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
	if cfg.Batch != nil {
		d.bat = newBatcher(d, cfg.Batch)
	}
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
// removed. After Shutdown it still counts the ones Shutdown left behind.
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

// releaseLocked accounts for n deliveries that went from accepted to gone.
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
