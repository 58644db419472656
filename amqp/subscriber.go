package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// Subscriber consumes a group's queue and runs a handler for each message
// with keyed, ordered concurrency. Create it with NewSubscriber.
type Subscriber struct {
	cfg  *config
	conn *conn

	life adapter.Lifecycle // the running Subscribe and Declare calls; Close cancels them
	acks *ackCoalescer     // Subscribe's acks, sent together (acks.go)
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber connects to the broker at url (amqp:// or amqps://) and
// returns a Subscriber for the group set by WithGroup (default "default").
// It takes the Subscriber options and the shared ones (Option); a
// Publisher option does not compile here. It fails with an error wrapping
// message.ErrInvalidConfig that names the option when an option value is
// bad, and fails when the URL is invalid or the first connection attempt
// fails; later connection losses are repaired in the background.
func NewSubscriber(url string, opts ...SubscriberOption) (*Subscriber, error) {
	cfg, err := newSubscriberConfig(opts)
	if err != nil {
		return nil, err
	}
	c, err := dialConn(url, cfg, "subscriber")
	if err != nil {
		return nil, err
	}
	return &Subscriber{cfg: cfg, conn: c, acks: newAckCoalescer(cfg.prefetchCount())}, nil
}

// Declare creates topic's exchange and the subscriber group's queue bound
// to it, as Subscribe does, without consuming. Messages published after it
// returns are kept for the group. It is idempotent.
func (s *Subscriber) Declare(ctx context.Context, topic string) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	ctx, end, err := s.life.Begin(ctx)
	if err != nil {
		return fmt.Errorf("amqp: declare %q: %w", topic, err)
	}
	defer end()
	for {
		sess, err := s.conn.get(ctx)
		if err != nil {
			return err
		}
		err = s.declare(sess, topic)
		if err == nil || errors.Is(err, message.ErrInvalidConfig) {
			return err
		}
		if err := s.conn.pause(ctx, sess, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func (s *Subscriber) declare(sess *session, topic string) error {
	ch, err := sess.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: open channel: %w", s.conn.scrub(err))
	}
	defer ch.Close()
	if err := s.cfg.declareExchange(ch, topic); err != nil {
		return err
	}
	_, err = s.cfg.declareGroup(ch, topic, s.cfg.Group)
	return err
}

// consumer is one consuming channel.
type consumer struct {
	ch         *amqp091.Channel
	tag        string
	deliveries <-chan amqp091.Delivery
	closes     chan *amqp091.Error
	// scope groups the channel's deliveries in the dispatcher, so that
	// giving the channel up (a shard moving, the channel lost) drains
	// them alone (dispatch.Dispatcher.Drain).
	scope *dispatch.Scope
	// stable is the careful session's (session.stable) when the consumer
	// was opened with prefetch 1 after undecodable deliveries, else nil;
	// refresh is set when consume returned because it was closed.
	stable  <-chan struct{}
	refresh bool
}

// ref is a delivery's handle: acks go to the channel it came on.
type ref struct {
	c   *consumer
	tag uint64
}

func (s *Subscriber) startConsumer(sess *session, topic string) (*consumer, error) {
	ch, err := sess.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: open channel: %w", s.conn.scrub(err))
	}
	fail := func(err error) (*consumer, error) {
		_ = ch.Close()
		return nil, err
	}
	prefetch := sess.prefetch(s.cfg.prefetchCount())
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return fail(fmt.Errorf("amqp: set prefetch %d: %w", prefetch, err))
	}
	if err := s.cfg.declareExchange(ch, topic); err != nil {
		return fail(err)
	}
	t, err := s.cfg.declareGroup(ch, topic, s.cfg.Group)
	if err != nil {
		return fail(err)
	}
	q := t.base
	var rb [8]byte
	_, _ = rand.Read(rb[:])
	tag := "ferry-" + hex.EncodeToString(rb[:])
	c := &consumer{ch: ch, tag: tag, closes: ch.NotifyClose(make(chan *amqp091.Error, 1))}
	if prefetch < s.cfg.prefetchCount() {
		c.stable = sess.stable
	}
	c.deliveries, err = ch.Consume(q, tag, false, false, false, false, nil)
	if err != nil {
		return fail(declareErr(fmt.Sprintf("consume queue %q", q), err))
	}
	return c, nil
}

// Subscribe consumes the group's queue of topic (declaring the exchange,
// queue and binding first) and calls h for each message until ctx is
// cancelled (it then drains and returns nil), Close is called (ErrClosed)
// or a fatal error occurs (a declaration the broker refuses, such as a
// queue that exists with other arguments). Connection losses are repaired
// without returning. Several Subscribe calls, on one or several topics,
// may run on one Subscriber.
func (s *Subscriber) Subscribe(ctx context.Context, topic string, h message.Handler) error {
	if h == nil {
		return fmt.Errorf("amqp: %w", message.ErrNilHandler)
	}
	return s.subscribe(ctx, topic, h, nil)
}

// subscribe is Subscribe, or SubscribeBatch when bat is set (batch.go).
func (s *Subscriber) subscribe(ctx context.Context, topic string, h message.Handler, bat *dispatch.Batch) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if _, err := s.cfg.topologyFor(topic, s.cfg.Group); err != nil {
		return err
	}
	// rctx ends on ctx's end or on Close.
	rctx, end, err := s.life.Begin(ctx)
	if err != nil {
		return fmt.Errorf("amqp: subscribe %q: %w", topic, err)
	}
	defer end()

	dcfg := dispatch.ConfigFor(s.cfg.SubscriberConfig)
	dcfg.MaxPending = 2 * s.cfg.prefetchCount()
	dcfg.OnError = s.cfg.handlerErrorObserver()
	dcfg.Batch = s.batchAcks(bat) // batch.go: a batch's settled deliveries acked together
	d := dispatch.New(ctx, h, dcfg, func(dl *dispatch.Delivery) {
		s.cfg.observeHandled(dl)
		s.acks.settle(dl) // acks.go: sent together within ackFlushDelay
	})
	defer s.startLag(rctx, topic)() // the queue depth, with an observer (observe.go)

	if !s.cfg.competing {
		err := s.runGroup(rctx, topic, d)
		d.Shutdown()
		switch {
		case err != nil:
			return err
		case ctx.Err() != nil:
			return nil
		default:
			return message.ErrClosed
		}
	}

	var cur *consumer
	var fatal error
	for {
		sess, err := s.conn.get(rctx)
		if err != nil {
			break
		}
		cur, err = s.startConsumer(sess, topic)
		if err != nil {
			if errors.Is(err, message.ErrInvalidConfig) {
				fatal = err
				break
			}
			s.log("ferry amqp: consumer start failed; retrying", "topic", topic, "group", s.cfg.Group, "err", err.Error())
			if s.conn.pause(rctx, sess, s.cfg.reconnect[0]) != nil {
				break
			}
			continue
		}
		cur.scope = d.NewScope()
		// Ready (message.WithReady): the queue is declared, bound and
		// consumed.
		message.SignalReady(rctx)
		if s.consume(rctx, cur, d, topic) {
			break // ctx done or closed
		}
		if cur.refresh {
			// The careful connection held: consume again with the
			// normal prefetch, after the running handlers finished and
			// were acked (closing the channel requeues the rest, in
			// order).
			_ = cur.ch.Cancel(cur.tag, false)
			select {
			case <-d.Drain(cur.scope):
			case <-rctx.Done():
			}
			if rctx.Err() != nil {
				break
			}
			s.acks.flush()
			_ = cur.ch.Close()
			cur = nil
			continue
		}
		// The channel died (or the broker cancelled the consumer): its
		// unacked deliveries go back to the queue, so drop the ones not
		// yet running and consume again.
		cause := "channel closed"
		select {
		case e, ok := <-cur.closes:
			if ok && e != nil {
				cause = s.conn.scrub(e).Error()
			}
		default:
		}
		s.log("ferry amqp: consumer lost; resuming", "topic", topic, "group", s.cfg.Group, "err", cause)
		d.Drain(cur.scope) // not waited for: the broker has requeued them
		_ = cur.ch.Close()
		cur = nil
		if err := s.conn.pause(rctx, sess, s.cfg.reconnect[0]); err != nil {
			break
		}
	}

	// Graceful shutdown: stop deliveries, let in-flight handlers finish
	// and ack them, then close the channel (which requeues the rest).
	if cur != nil {
		_ = cur.ch.Cancel(cur.tag, false)
	}
	d.Shutdown()
	s.acks.flush()
	if cur != nil {
		_ = cur.ch.Close()
	}
	switch {
	case fatal != nil:
		return fatal
	case ctx.Err() != nil:
		return nil
	default:
		return message.ErrClosed
	}
}

// consume feeds deliveries to d until the channel dies (false) or rctx
// ends (true).
func (s *Subscriber) consume(rctx context.Context, c *consumer, d *dispatch.Dispatcher, topic string) bool {
	for {
		select {
		case <-rctx.Done():
			return true
		case <-c.stable:
			c.refresh = true
			return false
		case dv, ok := <-c.deliveries:
			if !ok {
				return rctx.Err() != nil
			}
			m := s.cfg.toMessage(topic, s.cfg.Group, &dv)
			if err := d.Submit(rctx, &dispatch.Delivery{Msg: m, Ref: &ref{c: c, tag: dv.DeliveryTag}, Scope: c.scope}); err != nil {
				return true
			}
		}
	}
}

// log writes an adapter-specific record at Warn, with the attribute names
// of message.LogEvents (system first).
func (s *Subscriber) log(msg string, args ...any) {
	if l := s.cfg.logger; l != nil {
		l.Warn(msg, append([]any{"system", System}, args...)...)
	}
}

// Close stops every Subscribe call (each drains its in-flight handlers,
// acks what finished and returns ErrClosed), then closes the connection.
// It is safe to call more than once.
func (s *Subscriber) Close() error {
	first := s.life.Cancel()
	if first {
		s.conn.stop() // a call waiting for a connection gives up
	}
	s.life.Wait()
	s.acks.flush()
	if first {
		s.conn.close()
	}
	return nil
}
