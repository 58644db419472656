package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// Relay defaults.
const (
	// DefaultBatchSize is the default of WithBatchSize.
	DefaultBatchSize = 500
	// DefaultPollIntervalPostgres is the default of WithPollInterval on
	// PostgreSQL, where NOTIFY wakes the relay at once and polling is
	// the safety net.
	DefaultPollIntervalPostgres = 500 * time.Millisecond
	// DefaultPollIntervalSQLite is the default of WithPollInterval on
	// SQLite, which has no NOTIFY.
	DefaultPollIntervalSQLite = 100 * time.Millisecond
	// DefaultPublishTimeout is the default of WithPublishTimeout.
	DefaultPublishTimeout = 30 * time.Second
	// DefaultRebalanceInterval is the default of WithRebalanceInterval.
	DefaultRebalanceInterval = time.Second
	// DefaultBackoffInitial and DefaultBackoffMax are the defaults of
	// WithBackoff.
	DefaultBackoffInitial = 100 * time.Millisecond
	DefaultBackoffMax     = 10 * time.Second
)

// ErrRelayRunning is returned by Run when the relay is running already,
// or, on SQLite, when another relay runs on the same outbox table
// (in this process or another).
var ErrRelayRunning = errors.New("outbox: a relay is already running")

// Relay publishes the committed rows of an Outbox through a
// message.Publisher and removes each row only after Publish returned nil
// for it. See the package doc for the guarantees.
type Relay struct {
	o              *Outbox
	pub            message.Publisher
	batch          int
	poll           time.Duration
	boInit, boMax  time.Duration
	permanent      func(error) bool
	publishTimeout time.Duration
	rebalance      time.Duration
	logger         *slog.Logger

	running atomic.Bool

	published, dead, retried, failures atomic.Int64
	owned                              atomic.Int32
	listening                          atomic.Bool
	notPgx                             atomic.Bool // the driver is not pgx's: no claims
	lastErr                            atomic.Pointer[error]

	wakeMu sync.Mutex
	wakes  map[int]chan struct{} // shard -> its worker's wake-up channel
}

// RelayOption configures a Relay.
type RelayOption func(*Relay) error

// WithBatchSize sets how many rows of a shard one read takes and one
// Publish call carries (per topic), 1 to 10,000. Default DefaultBatchSize
// (500).
func WithBatchSize(n int) RelayOption {
	return func(r *Relay) error {
		if n < 1 || n > 10_000 {
			return invalidConfig("WithBatchSize(%d): must be 1 to 10000", n)
		}
		r.batch = n
		return nil
	}
}

// WithPollInterval sets how often an idle shard is read without a
// wake-up. Default DefaultPollIntervalPostgres (500 ms) on PostgreSQL,
// where NOTIFY wakes the relay as rows commit, and
// DefaultPollIntervalSQLite (100 ms) on SQLite.
func WithPollInterval(d time.Duration) RelayOption {
	return func(r *Relay) error {
		if d <= 0 {
			return invalidConfig("WithPollInterval(%v): must be positive", d)
		}
		r.poll = d
		return nil
	}
}

// WithBackoff sets the exponential backoff (with jitter, from
// cenkalti/backoff/v4) between attempts after a failed Publish or
// database error: initial wait, doubling up to max, retrying forever.
// Default DefaultBackoffInitial (100 ms) to DefaultBackoffMax (10 s).
func WithBackoff(initial, max time.Duration) RelayOption {
	return func(r *Relay) error {
		if initial <= 0 || max < initial {
			return invalidConfig("WithBackoff(%v, %v): want 0 < initial <= max", initial, max)
		}
		r.boInit, r.boMax = initial, max
		return nil
	}
}

// WithPermanentError sets the classifier of publish errors: true means
// the broker will never accept the message, and the relay moves it to
// the dead table; false means retry with backoff, in order. Default
// IsPermanent.
func WithPermanentError(f func(error) bool) RelayOption {
	return func(r *Relay) error {
		if f == nil {
			return invalidConfig("WithPermanentError(nil)")
		}
		r.permanent = f
		return nil
	}
}

// WithPublishTimeout bounds one Publish call (and the database write
// after it). A batch in flight when Run's ctx is cancelled is finished
// within this bound, so a graceful stop publishes nothing twice. Default
// DefaultPublishTimeout (30 s).
func WithPublishTimeout(d time.Duration) RelayOption {
	return func(r *Relay) error {
		if d <= 0 {
			return invalidConfig("WithPublishTimeout(%v): must be positive", d)
		}
		r.publishTimeout = d
		return nil
	}
}

// WithRebalanceInterval sets how often a PostgreSQL relay counts the
// running relays, takes free shards up to its fair share and hands
// shards over that it holds beyond it. Default DefaultRebalanceInterval
// (1 s).
func WithRebalanceInterval(d time.Duration) RelayOption {
	return func(r *Relay) error {
		if d <= 0 {
			return invalidConfig("WithRebalanceInterval(%v): must be positive", d)
		}
		r.rebalance = d
		return nil
	}
}

// WithLogger logs publish and database failures (Warn, with the table,
// shard and error), rows moved to the dead table (Error) and shard
// ownership changes (Info). Default nil, no logging; Stats counts the
// failures either way.
func WithLogger(l *slog.Logger) RelayOption {
	return func(r *Relay) error { r.logger = l; return nil }
}

// IsPermanent is the default classifier of WithPermanentError: a message
// over the broker's size limit (message.ErrMessageTooLarge), a topic the
// broker rejects (message.ErrInvalidTopic) or a message it cannot carry
// (message.ErrInvalidMessage). Everything else, including
// message.ErrUnroutable and message.ErrTopicNotFound (which a
// subscriber or an operator can fix), is retried.
func IsPermanent(err error) bool {
	return errors.Is(err, message.ErrMessageTooLarge) ||
		errors.Is(err, message.ErrInvalidTopic) ||
		errors.Is(err, message.ErrInvalidMessage)
}

// NewRelay returns a relay of o's rows to pub. It does not own pub:
// close it after Run returned.
func NewRelay(o *Outbox, pub message.Publisher, opts ...RelayOption) (*Relay, error) {
	if o == nil {
		return nil, invalidConfig("NewRelay: nil *Outbox")
	}
	if isnil.Is(pub) {
		return nil, invalidConfig("NewRelay: nil message.Publisher")
	}
	r := &Relay{o: o, pub: pub, batch: DefaultBatchSize, boInit: DefaultBackoffInitial, boMax: DefaultBackoffMax,
		permanent: IsPermanent, publishTimeout: DefaultPublishTimeout, rebalance: DefaultRebalanceInterval,
		wakes: map[int]chan struct{}{}}
	r.poll = DefaultPollIntervalPostgres
	if o.dialect == SQLite {
		r.poll = DefaultPollIntervalSQLite
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Stats is a snapshot of a relay's counters.
type Stats struct {
	// Published counts rows published and removed (or marked).
	Published int64
	// DeadLettered counts rows moved to the dead table.
	DeadLettered int64
	// Retried counts rows left in place after a failed attempt, to be
	// published again in order.
	Retried int64
	// Failures counts failed Publish calls and database errors.
	Failures int64
	// OwnedShards is the number of shards this relay publishes now.
	OwnedShards int
	// Listening reports whether the NOTIFY wake-up is connected.
	Listening bool
	// LastError is the last failure, or nil.
	LastError error
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	s := Stats{Published: r.published.Load(), DeadLettered: r.dead.Load(), Retried: r.retried.Load(),
		Failures: r.failures.Load(), OwnedShards: int(r.owned.Load()), Listening: r.listening.Load()}
	if e := r.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

// Run publishes until ctx is cancelled, then finishes the batches in
// flight (bounded by WithPublishTimeout), releases its shards and returns
// nil. Failures of the broker or the database are retried with backoff,
// counted in Stats and logged (WithLogger); they do not end Run. Run
// returns an error only for a nil ctx or ErrRelayRunning: a second Run of
// the same relay, or, on SQLite, another relay on the same table.
func (r *Relay) Run(ctx context.Context) error {
	if r == nil {
		return invalidConfig("Run on a nil *Relay")
	}
	if ctx == nil {
		return invalidConfig("Run: nil context")
	}
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Run called again on the same relay of %s", ErrRelayRunning, r.o.table)
	}
	defer r.running.Store(false)
	if r.o.dialect == SQLite {
		return r.runSQLite(ctx)
	}
	return r.runPostgres(ctx)
}

func (r *Relay) runSQLite(ctx context.Context) error {
	release, err := lockSQLite(ctx, r.o)
	if err != nil {
		return err
	}
	defer release()
	shards := make([]int, r.o.shards)
	for i := range shards {
		shards[i] = i
	}
	r.owned.Store(int32(len(shards)))
	defer r.owned.Store(0)
	w := r.newWorker(shards, dbOps{r.o.db}, nil)
	var wg sync.WaitGroup
	if r.o.retention > 0 {
		wg.Go(func() { r.purgeLoop(ctx) })
	}
	w.run(ctx)
	wg.Wait()
	return nil
}

// fail records a failure.
func (r *Relay) fail(what string, shard int, err error) {
	r.failures.Add(1)
	r.lastErr.Store(&err)
	if r.logger != nil {
		r.logger.Warn("outbox relay: "+what, "table", r.o.table, "shard", shard, "err", err)
	}
}

func (r *Relay) info(msg string, args ...any) {
	if r.logger != nil {
		r.logger.Info("outbox relay: "+msg, append([]any{"table", r.o.table}, args...)...)
	}
}

func (r *Relay) newBackoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(r.boInit),
		backoff.WithMaxInterval(r.boMax),
		backoff.WithMaxElapsedTime(0), // retry forever: nothing is dropped
	)
	return b
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// register gives shards a wake-up channel.
func (r *Relay) register(shards []int) chan struct{} {
	ch := make(chan struct{}, 1)
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	for _, s := range shards {
		r.wakes[s] = ch
	}
	return ch
}

func (r *Relay) unregister(shards []int) {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	for _, s := range shards {
		delete(r.wakes, s)
	}
}

// wake tells shard's worker to read now.
func (r *Relay) wake(shard int) {
	r.wakeMu.Lock()
	ch := r.wakes[shard]
	r.wakeMu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// wakeAll wakes every worker.
func (r *Relay) wakeAll() {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	for _, ch := range r.wakes {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// purgeLoop deletes published rows older than the retention.
func (r *Relay) purgeLoop(ctx context.Context) {
	every := min(max(r.o.retention/10, time.Second), time.Minute)
	for sleep(ctx, every) {
		if _, err := r.o.Purge(ctx); err != nil && ctx.Err() == nil {
			r.fail("purge published rows", -1, err)
		}
	}
}
