package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// keyCtx is the context key of the dedupe key of the message being handled.
type keyCtx struct{}

// keyContext is the handler's context: ctx with the claimed key, one
// allocation (context.WithValue would take two, boxing the string).
type keyContext struct {
	context.Context
	key string
}

func (c *keyContext) Value(k any) any {
	if _, ok := k.(keyCtx); ok {
		return c.key
	}
	return c.Context.Value(k)
}

// KeyFromContext returns the dedupe key the middleware claimed for the
// message being handled (the KeyFunc's result, WithKey) and true, when ctx
// is (or derives from) the context the middleware passed to the handler.
// It returns "", false otherwise (nil ctx included): outside the
// middleware, or for a message without a key, which is not deduplicated.
// sqlstore.MarkProcessedTx uses it when called with an empty key, so a
// handler never recomputes the key.
func KeyFromContext(ctx context.Context) (string, bool) {
	if ctx == nil {
		return "", false
	}
	k, ok := ctx.Value(keyCtx{}).(string)
	return k, ok && k != ""
}

// DefaultLease is how long a claim holds a key before another delivery may
// take it over, unless renewed. With renewal on (the default) a running
// handler keeps its claim however long it runs; the lease only bounds how
// long a crashed consumer blocks the key.
const DefaultLease = time.Minute

// ErrAlreadyProcessed is returned by sqlstore's MarkProcessedTx when the
// key is already marked processed: another delivery of the message
// committed first. Roll the transaction back. A handler may return it (or
// an error wrapping it): the middleware then treats the message as done
// and returns nil.
var ErrAlreadyProcessed = errors.New("dedupe: already processed")

// KeyFunc returns the dedupe key of a message. An empty key means the
// message is not deduplicated: the handler runs as without the middleware.
type KeyFunc func(msg *message.Message) string

// KeyByID is the default KeyFunc: the message ID, which Publish fills in
// and every adapter carries end to end. A nil message has the empty key, as
// with every KeyFunc here.
func KeyByID(msg *message.Message) string {
	if msg == nil {
		return ""
	}
	return msg.ID
}

// KeyByPosition keys a message by where the broker stored it:
// "group/topic/partition/offset", as in Spring Kafka's idempotent-consumer
// examples. It catches redeliveries of one record (after a crash or a
// rebalance) but not a message published twice. On brokers without
// positions (AMQP, where Partition is -1) it falls back to "id:" + msg.ID.
func KeyByPosition(msg *message.Message) string {
	if msg == nil {
		return ""
	}
	d := &msg.Delivery
	if d.Partition < 0 || d.Offset < 0 {
		if msg.ID == "" {
			return ""
		}
		return "id:" + msg.ID
	}
	b := make([]byte, 0, len(d.Group)+len(d.Topic)+24)
	b = append(b, d.Group...)
	b = append(b, '/')
	b = append(b, d.Topic...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(d.Partition), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, d.Offset, 10)
	return string(b)
}

// KeyByHeader keys a message by the value of header name, for producers
// that carry their own idempotency key. A message without the header is
// not deduplicated.
func KeyByHeader(name string) KeyFunc {
	return func(msg *message.Message) string {
		if msg == nil {
			return ""
		}
		return msg.Headers[name]
	}
}

// Option configures the middleware returned by New.
type Option func(*config) error

type config struct {
	key         KeyFunc
	onDuplicate func(ctx context.Context, msg *message.Message, key string)
	lease       time.Duration
	renew       time.Duration // <0: default (lease/3); 0: off
}

// WithOnDuplicate calls fn for each message skipped because its key was
// already processed (for logs and metrics). fn runs on the handler's
// goroutine before the message is settled and must not block. It adds to
// WithObserver's. Default: none.
func WithOnDuplicate(fn func(ctx context.Context, msg *message.Message, key string)) Option {
	return func(c *config) error {
		if fn == nil {
			return invalidConfig("WithOnDuplicate(nil)")
		}
		c.onDuplicate = thenDuplicate(c.onDuplicate, fn) // with WithObserver's (observe.go)
		return nil
	}
}

// WithKey sets how a message's dedupe key is computed. Default KeyByID.
func WithKey(f KeyFunc) Option {
	return func(c *config) error {
		if f == nil {
			return invalidConfig("WithKey(nil)")
		}
		c.key = f
		return nil
	}
}

// WithLease sets how long a claim holds a key. Default DefaultLease (1
// min). With renewal on, it bounds how long a crashed consumer blocks
// redeliveries of the key; with renewal off it must exceed the longest
// handler run, or a duplicate delivered meanwhile may run concurrently.
func WithLease(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return invalidConfig("WithLease(%v): must be positive", d)
		}
		c.lease = d
		return nil
	}
}

// WithLeaseRenewal sets how often a running handler's claim is extended to
// a full lease again. Default lease/3. 0 turns renewal off (see WithLease).
// It must be shorter than the lease.
func WithLeaseRenewal(every time.Duration) Option {
	return func(c *config) error {
		if every < 0 {
			return invalidConfig("WithLeaseRenewal(%v): must not be negative", every)
		}
		c.renew = every
		return nil
	}
}

// New returns the idempotent-consumer middleware over store.
//
// For each message it computes the key (WithKey), claims it in the store
// and then: skips the message (returns nil) when the key was processed;
// returns ErrInProgress, so the subscriber redelivers later, when another
// delivery holds a live claim; otherwise runs the handler, marks the key
// processed when it returns nil, and releases the key when it fails or
// panics, returning its error so the message is redelivered. Store errors
// are returned too: the message is redelivered, never settled unprocessed.
//
// Put dedupe inside the retry middleware: message.Chain(h, retryMW,
// dedupeMW). A message that retry dead-letters is then not marked
// processed (its replay runs), and ErrInProgress, which wraps
// message.ErrRedeliver, is passed back for redelivery rather than retried.
func New(store Store, opts ...Option) (message.Middleware, error) {
	if isnil.Is(store) {
		return nil, invalidConfig("New: nil store (%T)", store)
	}
	c := config{key: KeyByID, lease: DefaultLease, renew: -1}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.renew < 0 {
		c.renew = c.lease / 3
	}
	if c.renew >= c.lease {
		return nil, invalidConfig("lease renewal every %v must be shorter than the lease %v", c.renew, c.lease)
	}
	m := &middleware{store: store, cfg: c}
	m.renewers.New = func() any { return newRenewer(m) }
	return m.wrap, nil
}

type middleware struct {
	store    Store
	cfg      config
	renewers sync.Pool
}

func (m *middleware) wrap(next message.Handler) message.Handler {
	if next == nil {
		// Keep a nil handler nil so Subscribe reports ErrNilHandler.
		return nil
	}
	return func(ctx context.Context, msg *message.Message) error {
		return m.handle(ctx, next, msg)
	}
}

func (m *middleware) handle(ctx context.Context, next message.Handler, msg *message.Message) error {
	if msg == nil {
		return next(ctx, msg)
	}
	key := m.cfg.key(msg)
	if key == "" {
		return next(ctx, msg)
	}
	res, err := m.store.Claim(ctx, key, m.cfg.lease)
	if err != nil {
		return storeError("claim", key, err)
	}
	switch res.Status {
	case Claimed:
	case Processed:
		if m.cfg.onDuplicate != nil {
			m.cfg.onDuplicate(ctx, msg, key)
		}
		return nil
	case InProgress:
		return fmt.Errorf("%w: key %q", ErrInProgress, key)
	default:
		return fmt.Errorf("dedupe: claim %q: store returned invalid status %d", key, res.Status)
	}

	var r *renewer
	if m.cfg.renew > 0 {
		r = m.renewers.Get().(*renewer)
		r.start(key, res.Token)
	}
	err = adapter.Call(&keyContext{ctx, key}, next, msg)
	if r != nil {
		r.stop()
		m.renewers.Put(r)
	}

	// The handler's ctx may have been cancelled at the drain timeout; the
	// outcome must still reach the store.
	sctx := ctx
	if ctx.Err() != nil {
		sctx = context.WithoutCancel(ctx)
	}
	if err != nil {
		if errors.Is(err, ErrAlreadyProcessed) {
			// The handler found the key marked in its own transaction:
			// another delivery committed the work.
			return nil
		}
		if rerr := m.store.Release(sctx, key, res.Token); rerr != nil {
			return errors.Join(err, storeError("release", key, rerr))
		}
		return err
	}
	if err := m.store.Complete(sctx, key); err != nil {
		return storeError("complete", key, err)
	}
	return nil
}

func storeError(op, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("dedupe: %s %q: %w", op, key, err)
}

// renewer extends one claim's lease while its handler runs. Renewers are
// pooled with their timer, so renewal costs no allocation per message.
type renewer struct {
	m     *middleware
	timer *time.Timer

	mu     sync.Mutex
	cond   sync.Cond
	active bool
	firing bool
	key    string
	token  Token
}

func newRenewer(m *middleware) *renewer {
	r := &renewer{m: m}
	r.cond.L = &r.mu
	r.timer = time.AfterFunc(time.Hour, r.fire)
	r.timer.Stop()
	return r
}

func (r *renewer) start(key string, token Token) {
	r.mu.Lock()
	r.active, r.key, r.token = true, key, token
	r.timer.Reset(r.m.cfg.renew)
	r.mu.Unlock()
}

// stop ends renewal and waits for an Extend in flight, so no renewal runs
// after the handler's outcome is recorded.
func (r *renewer) stop() {
	r.mu.Lock()
	r.active = false
	r.timer.Stop()
	for r.firing {
		r.cond.Wait()
	}
	r.key = ""
	r.mu.Unlock()
}

func (r *renewer) fire() {
	r.mu.Lock()
	if !r.active {
		r.mu.Unlock()
		return
	}
	r.firing = true
	key, token := r.key, r.token
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), r.m.cfg.renew)
	err := r.m.store.Extend(ctx, key, token, r.m.cfg.lease)
	cancel()

	r.mu.Lock()
	r.firing = false
	if r.active && !errors.Is(err, ErrLeaseLost) {
		// On other errors keep trying: the lease may still be ours.
		r.timer.Reset(r.m.cfg.renew)
	}
	r.cond.Broadcast()
	r.mu.Unlock()
}
