package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// ErrDrainTimeout is the cause of the handlers' contexts when the drain
// deadline passes (or a second signal comes), and is wrapped by Run's
// error then.
var ErrDrainTimeout = errors.New("runner: drain deadline passed")

// CloseGrace is how long Run waits, after cancelling the handlers'
// contexts at the drain deadline, before it closes the subscribers that
// have still not returned (a third signal closes them at once), and then
// again before it returns without the subscriptions that still run (a
// handler that ignores its context), leaving them to the process's exit.
const CloseGrace = 5 * time.Second

// Runner runs a service's subscriptions: Add them, then Run. Its methods
// are safe for concurrent use; the HTTP handlers may be served before,
// during and after Run.
type Runner struct {
	cfg      config
	ready    chan struct{} // closed when every subscription consumes
	stopCh   chan struct{} // closed by Stop
	stopOnce sync.Once

	mu      sync.Mutex
	subs    []*subscription
	names   map[string]bool
	phase   phase
	nReady  int   // subscriptions consuming
	nSubs   int   // subscriptions (not tasks)
	failure error // the first fatal error, or the drain deadline
}

type phase int

const (
	idle phase = iota
	running
	stopping
	done
)

// State is where a subscription is in its life.
type State string

// The states of a subscription, in the order they come.
const (
	// StateIdle: Run has not started it.
	StateIdle State = "idle"
	// StateStarting: Subscribe was called and is not consuming yet.
	StateStarting State = "starting"
	// StateConsuming: the subscriber signalled it consumes
	// (message.WithReady).
	StateConsuming State = "consuming"
	// StateStopping: the runner is stopping; running handlers finish.
	StateStopping State = "stopping"
	// StateStopped: Subscribe returned after the runner stopped it.
	StateStopped State = "stopped"
	// StateFailed: Subscribe returned on its own, or with an error; a
	// task returned an error.
	StateFailed State = "failed"
	// StateRunning: a task (Go) is running.
	StateRunning State = "running"
	// StateDone: a task returned nil before the stop.
	StateDone State = "done"
)

type subscription struct {
	name, topic string
	sub         message.Subscriber
	h           message.Handler      // nil for a batch subscription
	bh          message.BatchHandler // set by AddBatch
	bopts       []message.BatchOption
	task        func(context.Context) error // set by Go
	state       State
	err         error
}

// New returns a Runner with the given options. A bad option is an error
// wrapping message.ErrInvalidConfig that names it; nil options are
// ignored.
func New(opts ...Option) (*Runner, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &Runner{cfg: cfg, ready: make(chan struct{}), stopCh: make(chan struct{}), names: map[string]bool{}}, nil
}

// Add registers a subscription: Run will call sub.Subscribe(ctx, topic,
// message.Chain(h, mw...)), wrapped in the runner's WithMiddleware. name
// identifies it in logs, errors and the health endpoints (empty: the
// topic) and must be unique. The Runner owns sub from now on: Run closes
// it when it ends (once, however many subscriptions use it). Add after
// Run started, a nil (or typed-nil) sub or h, an empty topic or a
// duplicate name is an error wrapping message.ErrInvalidConfig.
func (r *Runner) Add(name string, sub message.Subscriber, topic string, h message.Handler, mw ...message.Middleware) error {
	if r == nil {
		return invalid("Add on a nil Runner (use New)")
	}
	if name == "" {
		name = topic
	}
	switch {
	case isnil.Is(sub):
		return invalid("Add(%q): the subscriber is nil (%T)", name, sub)
	case topic == "":
		return invalid("Add(%q): empty topic", name)
	case h == nil:
		return invalid("Add(%q): %v", name, message.ErrNilHandler)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.phase != idle {
		return invalid("Add(%q): Run has started", name)
	}
	if r.names[name] {
		return invalid("Add(%q): a subscription of that name exists", name)
	}
	r.names[name] = true
	r.subs = append(r.subs, &subscription{name: name, topic: topic, sub: sub, h: message.Chain(h, mw...), state: StateIdle})
	r.nSubs++
	return nil
}

// AddBatch is Add for a batch handler: Run calls
// sub.SubscribeBatch(ctx, topic, h, opts...), so sub must implement
// message.BatchSubscriber (every ferry adapter's does). Compose batch
// middleware with message.ChainBatch; WithMiddleware applies to Add's
// per-message handlers only. The errors are Add's, and one for a
// subscriber without SubscribeBatch.
func (r *Runner) AddBatch(name string, sub message.Subscriber, topic string, h message.BatchHandler, opts ...message.BatchOption) error {
	if r == nil {
		return invalid("AddBatch on a nil Runner (use New)")
	}
	if name == "" {
		name = topic
	}
	switch {
	case isnil.Is(sub):
		return invalid("AddBatch(%q): the subscriber is nil (%T)", name, sub)
	case topic == "":
		return invalid("AddBatch(%q): empty topic", name)
	case h == nil:
		return invalid("AddBatch(%q): %v", name, message.ErrNilHandler)
	}
	if _, ok := sub.(message.BatchSubscriber); !ok {
		return invalid("AddBatch(%q): %T has no SubscribeBatch (not a message.BatchSubscriber)", name, sub)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.phase != idle {
		return invalid("AddBatch(%q): Run has started", name)
	}
	if r.names[name] {
		return invalid("AddBatch(%q): a subscription of that name exists", name)
	}
	r.names[name] = true
	r.subs = append(r.subs, &subscription{name: name, topic: topic, sub: sub, bh: h, bopts: opts, state: StateIdle})
	r.nSubs++
	return nil
}

// Go adds a task that runs beside the subscriptions, such as a producer,
// an outbox relay or an HTTP server: Run calls fn once every subscription
// is consuming (at once when there are none), so that what it publishes
// reaches every group. fn's context is cancelled when the stop begins;
// fn must then return. A task that returns nil before the stop is done
// and the service runs on; one that returns an error fails the service as
// a failing subscription does (Run returns the error, naming the task).
// Go after Run started, a nil fn or a duplicate name is an error wrapping
// message.ErrInvalidConfig.
func (r *Runner) Go(name string, fn func(ctx context.Context) error) error {
	if r == nil {
		return invalid("Go on a nil Runner (use New)")
	}
	switch {
	case name == "":
		return invalid("Go: empty name")
	case fn == nil:
		return invalid("Go(%q): nil function", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.phase != idle {
		return invalid("Go(%q): Run has started", name)
	}
	if r.names[name] {
		return invalid("Go(%q): a subscription or task of that name exists", name)
	}
	r.names[name] = true
	r.subs = append(r.subs, &subscription{name: name, task: fn, state: StateIdle})
	return nil
}

// Stop begins a graceful stop of Run, as cancelling its context does: Run
// returns nil once every subscription drained. Stop may be called from a
// handler, before Run (which then stops at once) or more than once.
func (r *Runner) Stop() {
	if r != nil {
		r.stopOnce.Do(func() { close(r.stopCh) })
	}
}

// Ready returns a channel that is closed once every subscription is
// consuming: each subscriber signalled, through message.WithReady, that a
// message published from then on reaches its group. It stays open when a
// subscription fails first.
func (r *Runner) Ready() <-chan struct{} {
	if r == nil {
		return nil // never ready
	}
	return r.ready
}

// Run starts every subscription and blocks until they have all returned.
//
// It stops them all, gracefully, when ctx is cancelled, when one of the
// WithSignals signals arrives, or when one subscription fails (its
// Subscribe returns an error, or returns before it was stopped): the
// subscribers stop fetching and their running handlers finish with their
// contexts intact (the adapters' drain), until the one drain deadline
// (WithDrainTimeout) passes or a second signal arrives; then the
// handlers' contexts are cancelled with ErrDrainTimeout, and CloseGrace
// later (or at a third signal) the subscribers still running are closed.
// When every Subscribe has returned, Run closes the subscribers and then
// the WithClose closers.
//
// Run returns nil after a graceful stop. Otherwise it returns the first
// subscription's failure (naming the subscription, wrapping its error), an
// error wrapping ErrDrainTimeout naming the subscriptions still draining,
// the errors of Subscribe calls that failed while stopping, and close
// errors, joined (errors.Is sees each). Run may be called once; a nil ctx,
// a second call or a Runner with no subscriptions is an error wrapping
// message.ErrInvalidConfig.
func (r *Runner) Run(ctx context.Context) error {
	if r == nil {
		return invalid("Run on a nil Runner (use New)")
	}
	if ctx == nil {
		return invalid("Run: nil context")
	}
	r.mu.Lock()
	switch {
	case r.phase != idle:
		r.mu.Unlock()
		return invalid("Run called twice")
	case len(r.subs) == 0:
		r.mu.Unlock()
		return invalid("Run: no subscriptions or tasks (Add some first)")
	}
	r.phase = running
	subs := r.subs
	if r.nSubs == 0 {
		close(r.ready)
	}
	r.mu.Unlock()
	log := r.cfg.logger

	var srv *http.Server
	if r.cfg.httpAddr != "" {
		ln, err := net.Listen("tcp", r.cfg.httpAddr)
		if err != nil {
			err = fmt.Errorf("runner: health server on %s: %w", r.cfg.httpAddr, err)
			r.end(err)
			return errors.Join(err, r.closeAll(subs, nil))
		}
		srv = &http.Server{Handler: r.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		log.Info("runner: health endpoints", "addr", ln.Addr().String(), "paths", "/healthz /readyz")
	}

	var sigs chan os.Signal
	if len(r.cfg.signals) > 0 {
		sigs = make(chan os.Signal, 2)
		signal.Notify(sigs, r.cfg.signals...)
		defer signal.Stop(sigs)
	}

	base := context.WithoutCancel(ctx)
	subCtx, stopSubs := context.WithCancel(base)
	defer stopSubs()
	hardCtx, hardStop := context.WithCancelCause(base)
	defer hardStop(nil)

	type result struct {
		s   *subscription
		err error
	}
	results := make(chan result, len(subs))
	for _, s := range subs {
		if s.task != nil {
			go func() {
				select {
				case <-r.ready:
				case <-subCtx.Done():
					results <- result{s, nil}
					return
				}
				r.mu.Lock()
				if s.state == StateIdle {
					s.state = StateRunning
				}
				r.mu.Unlock()
				results <- result{s, s.task(subCtx)}
			}()
			continue
		}
		r.setState(s, StateStarting)
		rctx := message.WithReady(subCtx, func() { r.markReady(s) })
		if s.bh != nil {
			bh, bs := withBatchDeadline(hardCtx, s.bh), s.sub.(message.BatchSubscriber)
			go func() { results <- result{s, bs.SubscribeBatch(rctx, s.topic, bh, s.bopts...)} }()
			continue
		}
		h := withDeadline(hardCtx, message.Chain(s.h, r.cfg.mw...))
		go func() { results <- result{s, s.sub.Subscribe(rctx, s.topic, h)} }()
	}
	log.Info("runner: started", "subscriptions", r.nSubs, "tasks", len(subs)-r.nSubs)

	var (
		errs     []error // what Run returns, joined; the first failure first
		timer    *time.Timer
		deadline <-chan time.Time
		grace    <-chan time.Time
		level    int // 1: handler contexts cancelled; 2: subscribers closed
		closed   = map[message.Subscriber]bool{}
		pending  = len(subs)
		ctxDone  = ctx.Done()
		stopCh   = (<-chan struct{})(r.stopCh)
	)
	stop := func(reason string) {
		if r.beginStop() {
			stopSubs()
			timer = time.NewTimer(r.cfg.drain)
			deadline = timer.C
			log.Info("runner: stopping; running handlers finish first", "reason", reason, "drain_timeout", r.cfg.drain)
		}
	}
	force := func(reason string) {
		switch level {
		case 0:
			level = 1
			draining := r.draining()
			err := fmt.Errorf("%w (%s; drain timeout %v): still draining: %s", ErrDrainTimeout, reason, r.cfg.drain, strings.Join(draining, ", "))
			errs = append(errs, err)
			r.fail(err)
			log.Warn("runner: cancelling the running handlers' contexts", "reason", reason, "still_draining", draining)
			hardStop(ErrDrainTimeout)
			grace = time.After(CloseGrace)
		case 1:
			level = 2
			grace = time.After(CloseGrace)
			log.Warn("runner: closing the subscribers that still have not returned", "reason", reason, "still_draining", r.draining())
			for _, s := range subs {
				if s.task == nil && !closed[s.sub] && r.stateOf(s) == StateStopping {
					closed[s.sub] = true
					_ = s.sub.Close()
				}
			}
		case 2:
			// A handler that ignores its context keeps its Subscribe
			// running; return anyway, so that the process can exit.
			level = 3
			stuck := r.draining()
			err := fmt.Errorf("runner: %s still running %v after their subscribers were closed (%s); left running", strings.Join(stuck, ", "), CloseGrace, reason)
			errs = append(errs, err)
			log.Error("runner: giving up on subscriptions that do not return", "still_running", stuck)
		}
	}
	for pending > 0 && level < 3 {
		select {
		case <-ctxDone:
			ctxDone = nil
			stop("context cancelled")
		case <-stopCh:
			stopCh = nil
			stop("Stop called")
		case sig := <-sigs:
			if r.isStopping() {
				force("another signal " + sig.String())
			} else {
				stop("signal " + sig.String())
			}
		case <-deadline:
			deadline = nil
			force("drain deadline")
		case <-grace:
			force(fmt.Sprintf("still running %v later", CloseGrace))
		case res := <-results:
			pending--
			s, err := res.s, res.err
			if s.task != nil && err == nil && !r.isStopping() {
				r.setResult(s, StateDone, nil) // a task that finished its work
				continue
			}
			if s.task != nil && r.isStopping() && (err == nil || errors.Is(err, context.Canceled)) {
				r.setResult(s, StateStopped, nil)
				continue
			}
			if !r.isStopping() {
				if err == nil {
					err = errors.New("its Subscribe returned before the runner stopped it")
				}
				err = fmt.Errorf("runner: %s: %w", s.describe(), err)
				r.setResult(s, StateFailed, err)
				r.fail(err)
				errs = append([]error{err}, errs...)
				log.Error("runner: subscription failed; stopping the others", "subscription", s.name, "topic", s.topic, "err", err)
				stop("subscription " + s.name + " failed")
				continue
			}
			if err != nil && !(closed[s.sub] && errors.Is(err, message.ErrClosed)) {
				err = fmt.Errorf("runner: %s while stopping: %w", s.describe(), err)
				errs = append(errs, err)
				r.setResult(s, StateFailed, err)
				log.Error("runner: subscription ended with an error while stopping", "subscription", s.name, "err", err)
				continue
			}
			r.setResult(s, StateStopped, nil)
		}
	}
	if timer != nil {
		timer.Stop()
	}
	if err := r.closeAll(subs, closed); err != nil {
		errs = append(errs, err)
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(base, 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	err := errors.Join(errs...)
	r.end(err)
	if err != nil {
		log.Error("runner: stopped", "err", err)
	} else {
		log.Info("runner: stopped cleanly")
	}
	return err
}

// withDeadline gives each handler call a context that is also cancelled
// when hard is (the drain deadline), with hard's cause.
func withDeadline(hard context.Context, h message.Handler) message.Handler {
	return func(ctx context.Context, m *message.Message) error {
		hctx, cancel := context.WithCancelCause(ctx)
		stop := context.AfterFunc(hard, func() { cancel(context.Cause(hard)) })
		defer func() {
			stop()
			cancel(nil)
		}()
		return h(hctx, m)
	}
}

// withBatchDeadline is withDeadline for a batch handler.
func withBatchDeadline(hard context.Context, h message.BatchHandler) message.BatchHandler {
	return func(ctx context.Context, msgs []*message.Message) error {
		hctx, cancel := context.WithCancelCause(ctx)
		stop := context.AfterFunc(hard, func() { cancel(context.Cause(hard)) })
		defer func() {
			stop()
			cancel(nil)
		}()
		return h(hctx, msgs)
	}
}

// closeAll closes each subscriber once (skipping those in closed), then
// the WithClose closers in reverse order.
func (r *Runner) closeAll(subs []*subscription, closed map[message.Subscriber]bool) error {
	var errs []error
	seen := map[message.Subscriber]bool{}
	for _, s := range subs {
		if s.task != nil || seen[s.sub] || closed[s.sub] {
			continue
		}
		seen[s.sub] = true
		if err := s.sub.Close(); err != nil && !errors.Is(err, message.ErrClosed) {
			errs = append(errs, fmt.Errorf("runner: closing the subscriber of %q: %w", s.name, err))
		}
	}
	for i := len(r.cfg.closers) - 1; i >= 0; i-- {
		c := r.cfg.closers[i]
		if err := c.Close(); err != nil && !errors.Is(err, message.ErrClosed) {
			errs = append(errs, fmt.Errorf("runner: closing %T: %w", c, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) setState(s *subscription, st State) {
	r.mu.Lock()
	s.state = st
	r.mu.Unlock()
}

func (r *Runner) stateOf(s *subscription) State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return s.state
}

func (r *Runner) setResult(s *subscription, st State, err error) {
	r.mu.Lock()
	if s.state == StateConsuming {
		r.nReady--
	}
	s.state, s.err = st, err
	r.mu.Unlock()
}

// markReady records that s consumes, and closes ready when all do.
func (r *Runner) markReady(s *subscription) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.state != StateStarting {
		return
	}
	s.state = StateConsuming
	r.nReady++
	if r.nReady == r.nSubs && r.phase == running {
		close(r.ready)
		r.cfg.logger.Info("runner: every subscription is consuming", "subscriptions", r.nSubs)
	}
}

// beginStop moves to stopping; false when it already was.
func (r *Runner) beginStop() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.phase != running {
		return false
	}
	r.phase = stopping
	for _, s := range r.subs {
		if s.state == StateStarting || s.state == StateConsuming || s.state == StateRunning || s.task != nil && s.state == StateIdle {
			if s.state == StateConsuming {
				r.nReady--
			}
			s.state = StateStopping
		}
	}
	return true
}

func (r *Runner) isStopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase >= stopping
}

// draining names the subscriptions that have not returned.
func (r *Runner) draining() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, s := range r.subs {
		if s.state == StateStopping {
			names = append(names, s.name)
		}
	}
	return names
}

func (r *Runner) fail(err error) {
	r.mu.Lock()
	if r.failure == nil {
		r.failure = err
	}
	r.mu.Unlock()
}

func (r *Runner) end(err error) {
	r.mu.Lock()
	r.phase = done
	if r.failure == nil {
		r.failure = err
	}
	r.mu.Unlock()
}

// describe names s in errors.
func (s *subscription) describe() string {
	if s.task != nil {
		return fmt.Sprintf("task %q", s.name)
	}
	return fmt.Sprintf("subscription %q (topic %q)", s.name, s.topic)
}
