package amqp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// Publisher publishes messages to RabbitMQ exchanges with publisher
// confirms and mandatory routing. It is safe for concurrent use. Create it
// with NewPublisher.
type Publisher struct {
	cfg   *config
	conn  *conn
	slots []*slot
	next  atomic.Uint32

	declMu   sync.Mutex
	declared map[string]uint64 // exchange -> connection generation it was declared on

	// solo is held shared by each publish round from its first write to
	// its last confirm, and exclusively by a round of one suspect message
	// (see Publish).
	solo sync.RWMutex
	// brokerMax is the broker's max_message_size once it refused a
	// message over it (0 before): later payloads over it fail up front.
	brokerMax atomic.Int64

	mu        sync.Mutex // guards closing and calls
	closing   bool
	calls     sync.WaitGroup
	closed    chan struct{}
	closeOnce sync.Once
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher connects to the broker at url (amqp:// or amqps://) and
// returns a Publisher. It takes the Publisher options (WithRoutingKey,
// WithMaxPayload, WithPublishChannels) and the shared ones (Option), which
// include the topology options Declare uses; a Subscriber option does not
// compile here. It fails with an error wrapping message.ErrInvalidConfig
// that names the option when an option value is bad, and fails when the
// URL is invalid or the first connection attempt fails; later connection
// losses are repaired in the background (see the package doc, #
// Reconnection).
func NewPublisher(url string, opts ...PublisherOption) (*Publisher, error) {
	cfg, err := newPublisherConfig(opts)
	if err != nil {
		return nil, err
	}
	c, err := dialConn(url, cfg, "publisher")
	if err != nil {
		return nil, err
	}
	p := &Publisher{cfg: cfg, conn: c, declared: map[string]uint64{}, closed: make(chan struct{})}
	for range cfg.pubChannels {
		p.slots = append(p.slots, &slot{sem: make(chan struct{}, 1)})
	}
	return p, nil
}

// slot is one publishing channel of the pool. Publish calls write on its
// channel concurrently (the client serialises the frames; each call's
// messages stay in order); sem serialises replacing a dead channel.
type slot struct {
	sem chan struct{}
	pc  atomic.Pointer[pubChan]
}

// retKey identifies a returned message.
type retKey struct{ exchange, routingKey, id string }

// pubChan is one confirm-mode channel. Each publish's confirm is awaited
// on its amqp091 DeferredConfirmation, which the client's reader goroutine
// resolves itself: no goroutine of ours sits between a basic.ack and the
// waiting Publish call. Returns (mandatory routing) go to a goroutine of
// ours through two unbuffered listeners (see watchReturns), so that every
// return of a message is in returned before the client handles the
// message's confirm.
type pubChan struct {
	ch   *amqp091.Channel
	sess *session

	mu       sync.Mutex
	returned map[retKey][]string // guarded by mu
	nReturns atomic.Int32        // entries of returned not yet claimed

	dead    chan struct{} // closed once the channel is closed; deadErr set before
	deadErr error
}

// entry is one message of a publish round.
type entry struct {
	idx   int
	key   retKey
	dc    *amqp091.DeferredConfirmation // nil once resolved without a confirm
	state int32                         // entryPending, then one of the others
	err   error
}

const (
	entryPending int32 = iota
	entryOK
	entryFailed
	entryLost // the channel died before the confirm: publish again
)

func (pc *pubChan) isDead() bool {
	select {
	case <-pc.dead:
		return true
	default:
		return false
	}
}

// openPubChan opens a confirm-mode channel on s and starts its return and
// close watcher.
func (p *Publisher) openPubChan(s *session) (*pubChan, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("amqp: open channel: %w", p.conn.scrub(err))
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("amqp: enable publisher confirms: %w", err)
	}
	pc := &pubChan{ch: ch, sess: s, returned: map[retKey][]string{}, dead: make(chan struct{})}
	// Buffered so the client's reader never waits on us; the reader stops
	// waiting on a listener after 5 s and would drop the notification.
	closes := ch.NotifyClose(make(chan *amqp091.Error, 1))
	// Unbuffered, both: the client's reader hands a return to every
	// listener in turn, so it is done with the second only once
	// watchReturns has recorded what it took from the first.
	first := ch.NotifyReturn(make(chan amqp091.Return))
	second := ch.NotifyReturn(make(chan amqp091.Return))
	go pc.watchReturns(first, second, closes)
	return pc, nil
}

// watchReturns records returned messages until the channel closes, then
// marks it dead with its close error. RabbitMQ sends a message's
// basic.return before its basic.ack, and the client's one reader goroutine
// relays both in that order; since the reader passes each return to first
// and then to second (unbuffered) and this loop takes second only after
// recording the return, a return is in pc.returned before the reader goes
// on to resolve the message's DeferredConfirmation.
func (pc *pubChan) watchReturns(first, second <-chan amqp091.Return, closes <-chan *amqp091.Error) {
	for r := range first {
		k := retKey{r.Exchange, r.RoutingKey, r.MessageId}
		pc.mu.Lock()
		pc.returned[k] = append(pc.returned[k], fmt.Sprintf("%d %s", r.ReplyCode, r.ReplyText))
		pc.nReturns.Add(1)
		pc.mu.Unlock()
		<-second
	}
	for range second {
	}
	var cause error
	for e := range closes {
		if e != nil && cause == nil {
			cause = e
		}
	}
	if cause == nil {
		cause = errors.New("channel closed")
	}
	pc.deadErr = cause
	close(pc.dead)
}

// claimReturn reports whether a return for k was recorded, taking it.
func (pc *pubChan) claimReturn(k retKey) (string, bool) {
	if pc.nReturns.Load() == 0 {
		return "", false
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	rs := pc.returned[k]
	if len(rs) == 0 {
		return "", false
	}
	if len(rs) == 1 {
		delete(pc.returned, k)
	} else {
		pc.returned[k] = rs[1:]
	}
	pc.nReturns.Add(-1)
	return rs[0], true
}

// claimAbandoned waits for the confirms of entries whose Publish call
// returned early (its ctx ended) and discards their returns.
func (pc *pubChan) claimAbandoned(entries []*entry) {
	for _, e := range entries {
		if e.dc == nil {
			continue
		}
		<-e.dc.Done()
		if e.dc.Acked() {
			pc.claimReturn(e.key)
		}
	}
}

// acquire returns a live channel of the pool, waiting for a reconnection
// if needed.
func (p *Publisher) acquire(ctx context.Context) (*pubChan, error) {
	s := p.slots[int(p.next.Add(1))%len(p.slots)]
	if pc := s.pc.Load(); pc != nil && !pc.isDead() {
		return pc, nil
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.closed:
		return nil, message.ErrClosed
	}
	defer func() { <-s.sem }()
	for {
		old := s.pc.Load()
		if old != nil && !old.isDead() {
			return old, nil
		}
		if old != nil {
			_ = old.ch.Close()
		}
		sess, err := p.conn.get(ctx)
		if err != nil {
			return nil, err
		}
		pc, err := p.openPubChan(sess)
		if err != nil {
			if err := p.conn.pause(ctx, sess, 100*time.Millisecond); err != nil {
				return nil, err
			}
			continue
		}
		s.pc.Store(pc)
		return pc, nil
	}
}

// ensureExchange declares topic's exchange once per connection, with the
// topology of the WithDeclareGroups groups.
func (p *Publisher) ensureExchange(ctx context.Context, topic string) error {
	for {
		sess, err := p.conn.get(ctx)
		if err != nil {
			return err
		}
		p.declMu.Lock()
		done := p.declared[topic] == sess.gen
		p.declMu.Unlock()
		if done {
			return nil
		}
		err = p.withChannel(sess, func(ch *amqp091.Channel) error {
			if err := p.cfg.declareExchange(ch, topic); err != nil {
				return err
			}
			for _, g := range p.cfg.declareGroups {
				if _, err := p.cfg.declareGroup(ch, topic, g); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			p.declMu.Lock()
			p.declared[topic] = sess.gen
			p.declMu.Unlock()
			return nil
		}
		if isFatal(err) || errors.Is(err, message.ErrInvalidConfig) {
			return err
		}
		if err := p.conn.pause(ctx, sess, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// withChannel runs f on a short-lived channel of sess.
func (p *Publisher) withChannel(sess *session, f func(*amqp091.Channel) error) error {
	ch, err := sess.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: open channel: %w", p.conn.scrub(err))
	}
	defer ch.Close()
	return f(ch)
}

func (p *Publisher) begin() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return message.ErrClosed
	}
	p.calls.Add(1)
	return nil
}

// Declare creates topic's exchange and, for each group, its durable queues
// bound to it, exactly as a Subscriber of that group would with the same
// topology options (WithExchangeKind, WithBindingKey, WithQueueName,
// WithQuorumQueues, WithQueueArgs, WithDeadLetterExchange, WithShards,
// WithCompetingConsumers: give the Publisher the ones its Subscribers
// have; they are shared options for this reason). Call it
// before publishing to a topic whose subscribers have not started yet: a
// message published while no queue is bound is unroutable. It is
// idempotent; settings that differ from an existing exchange or queue fail
// with an error wrapping message.ErrInvalidConfig.
func (p *Publisher) Declare(ctx context.Context, topic string, groups ...string) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if err := p.begin(); err != nil {
		return err
	}
	defer p.calls.Done()
	for {
		sess, err := p.conn.get(ctx)
		if err != nil {
			return err
		}
		err = p.withChannel(sess, func(ch *amqp091.Channel) error {
			if err := p.cfg.declareExchange(ch, topic); err != nil {
				return err
			}
			for _, g := range groups {
				if _, err := p.cfg.declareGroup(ch, topic, g); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil || isFatal(err) || errors.Is(err, message.ErrInvalidConfig) {
			return err
		}
		if err := p.conn.pause(ctx, sess, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// Publish publishes msgs to topic's exchange and returns once the broker
// has confirmed every one of them. See the package doc for the mapping of
// Message fields and for what happens across a reconnection.
func (p *Publisher) Publish(ctx context.Context, topic string, msgs ...*message.Message) (err error) {
	if p.cfg != nil && p.cfg.obs != nil && ctx != nil {
		o := p.cfg.obs
		start := time.Now()
		defer func() { observePublish(ctx, o, topic, msgs, start, err) }()
	}
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	for i, m := range msgs {
		if err := p.cfg.checkMessage(i, len(msgs), m); err != nil {
			return err
		}
	}
	if limit := int(p.brokerMax.Load()); limit > 0 {
		for i, m := range msgs {
			if len(m.Payload) > limit {
				return tooLargeForBroker(i, len(msgs), m, limit, nil)
			}
		}
	}
	rks := make([]string, len(msgs))
	if err := adapter.Prepare(topic, msgs); err != nil {
		return fmt.Errorf("amqp: %w", err)
	}
	for i, m := range msgs {
		rks[i] = p.cfg.routingKey(topic, m)
		if len(rks[i]) > maxNameLen {
			return fmt.Errorf("amqp: %w: message #%d of %d (id %q) has a %d-byte routing key, AMQP allows %d", message.ErrInvalidMessage, i, len(msgs), m.ID, len(rks[i]), maxNameLen)
		}
	}
	if err := p.begin(); err != nil {
		return err
	}
	defer p.calls.Done()
	if len(msgs) == 0 {
		return nil
	}
	// A cancelled ctx publishes nothing (below, every round checks it
	// again before writing).
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.ensureExchange(ctx, topic); err != nil {
		return err
	}

	pubs := make([]amqp091.Publishing, len(msgs))
	for i, m := range msgs {
		pubs[i] = p.cfg.publishing(m)
	}
	todo := make([]int, len(msgs))
	for i := range todo {
		todo[i] = i
	}
	var failed []message.FailedMessage
	fail := func(i int, err error) {
		failed = append(failed, message.FailedMessage{Index: i, Message: msgs[i], Err: err})
	}
	channelErrs := 0
	// suspects are the messages that were in flight when the broker
	// closed the connection with an error of its own (not a network
	// failure): each is then published alone, with nothing else of this
	// Publisher in flight, so that a loss during that round is its doing;
	// the value counts those rounds in a row. One that reaches
	// maxConnectionKills fails instead of being published forever.
	var suspects map[int]int
	for len(todo) > 0 {
		round, rest, solo := todo, []int(nil), false
		for j, i := range todo {
			if _, ok := suspects[i]; ok {
				round, solo = []int{i}, true
				rest = append(append(rest, todo[:j]...), todo[j+1:]...)
				break
			}
		}
		entries, connLost, err := p.publishRound(ctx, topic, msgs, rks, pubs, round, solo)
		if err != nil {
			return err
		}
		var lost []int
		var lostErr error
		for _, e := range entries {
			switch e.state {
			case entryOK:
				delete(suspects, e.idx)
			case entryFailed:
				delete(suspects, e.idx)
				fail(e.idx, e.err)
			case entryLost:
				lost = append(lost, e.idx)
				if lostErr == nil {
					lostErr = e.err
				}
			}
		}
		// next is what remains, in batch order.
		next := func(lost []int) []int {
			t := append(lost, rest...)
			slices.Sort(t)
			return t
		}
		switch {
		case len(lost) == 0:
			todo = rest
		case connLost:
			// Lost with the connection: publish again once reconnected
			// (at-least-once).
			if brokerKilledConnection(lostErr) {
				if suspects == nil {
					suspects = map[int]int{}
				}
				keep := lost[:0]
				for _, i := range lost {
					if solo {
						suspects[i]++
					} else if _, ok := suspects[i]; !ok {
						suspects[i] = 0
					}
					if suspects[i] >= maxConnectionKills {
						delete(suspects, i)
						fail(i, connectionKiller(i, len(msgs), msgs[i], maxConnectionKills, lostErr))
						continue
					}
					keep = append(keep, i)
				}
				lost = keep
			}
			todo = next(lost)
		default:
			// Lost with a live connection: the broker closed the
			// channel. A message over its max_message_size fails (and
			// the limit is checked before later publishes); otherwise
			// (a 404 after the exchange was deleted, say) redeclare and
			// try a few times, then report.
			if limit, ok := brokerSizeLimit(lostErr); ok {
				p.brokerMax.Store(int64(limit))
				keep := lost[:0]
				for _, i := range lost {
					if len(msgs[i].Payload) > limit {
						fail(i, tooLargeForBroker(i, len(msgs), msgs[i], limit, lostErr))
						continue
					}
					keep = append(keep, i)
				}
				if len(keep) < len(lost) {
					todo = next(keep)
					continue
				}
			}
			p.declMu.Lock()
			delete(p.declared, topic)
			p.declMu.Unlock()
			channelErrs++
			if channelErrs >= 3 || isFatal(lostErr) {
				for _, i := range lost {
					fail(i, fmt.Errorf("amqp: publish to exchange %q: %w", topic, lostErr))
				}
				todo = rest
				continue
			}
			if err := p.ensureExchange(ctx, topic); err != nil {
				return err
			}
			todo = next(lost)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	sortFailed(failed)
	return &message.PublishError{Topic: topic, Failed: failed, Total: len(msgs)}
}

func sortFailed(f []message.FailedMessage) {
	slices.SortFunc(f, func(a, b message.FailedMessage) int { return cmp.Compare(a.Index, b.Index) })
}

// publishRound publishes msgs[todo] on one channel and waits for their
// confirms (or the channel's death). It returns ctx's error if ctx ends
// first, ErrClosed if the Publisher closes while waiting for a channel.
// connLost reports that the channel died with its connection. A solo
// round has nothing else of the Publisher in flight while it runs (other
// rounds wait for it, and it waits for the running ones). A message whose
// header frame does not fit in the connection's frame_max fails without
// being written.
func (p *Publisher) publishRound(ctx context.Context, topic string, msgs []*message.Message, rks []string, pubs []amqp091.Publishing, todo []int, solo bool) (entries []*entry, connLost bool, err error) {
	var pc *pubChan
	for {
		if pc, err = p.acquire(ctx); err != nil {
			return nil, false, err
		}
		if err := ctx.Err(); err != nil {
			// acquire may win a select against a done ctx: write nothing.
			return nil, false, err
		}
		if !solo {
			p.solo.RLock()
			defer p.solo.RUnlock()
			break
		}
		p.solo.Lock()
		// The channel was live when acquired, but the round that held the
		// lock may have killed its connection since: a loss of this round
		// must be this round's doing, so wait for that channel's end and
		// take a new one.
		if pc.isDead() || pc.sess.conn.IsClosed() {
			p.solo.Unlock()
			select {
			case <-pc.dead:
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
			continue
		}
		defer p.solo.Unlock()
		break
	}
	frameMax := pc.sess.conn.Config.FrameSize
	store := make([]entry, len(todo))
	entries = make([]*entry, len(todo))
	for j, i := range todo {
		e := &store[j]
		e.idx, e.key = i, retKey{topic, rks[i], msgs[i].ID}
		entries[j] = e
	}
	p.conn.writers.Add(1) // see coalescingConn
	for j, i := range todo {
		e := entries[j]
		if size, ok := frameFits(&pubs[i], frameMax); !ok {
			e.state, e.err = entryFailed, tooLargeFrame(i, len(msgs), msgs[i], size, frameMax)
			continue
		}
		if pc.isDead() {
			for _, e := range entries[j:] {
				e.state, e.err = entryLost, pc.deadErr
			}
			break
		}
		dc, err := pc.ch.PublishWithDeferredConfirm(topic, rks[i], true, false, pubs[i])
		if err == nil && dc == nil {
			err = errors.New("channel not in confirm mode")
		}
		if err != nil {
			for _, e := range entries[j:] {
				e.state, e.err = entryLost, err
			}
			break
		}
		e.dc = dc
	}
	p.conn.writers.Add(-1)
	for j, e := range entries {
		if e.dc == nil {
			continue
		}
		select {
		case <-e.dc.Done():
		case <-ctx.Done():
			// Nobody waits for these any more: take their returns when
			// they are confirmed, so that none is left to be matched to a
			// later publish of the same message.
			go pc.claimAbandoned(entries[j:])
			return nil, false, ctx.Err()
		}
		switch {
		case !e.dc.Acked() && pc.ch.IsClosed():
			// The client resolves what is outstanding as not acked when
			// the channel closes (it is marked closed first): lost, not
			// refused. Its close error comes with dead.
			select {
			case <-pc.dead:
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
			e.state, e.err = entryLost, pc.deadErr
		case !e.dc.Acked():
			e.state, e.err = entryFailed, ErrNacked
			// Retire the channel: the next publish opens a new one.
			// RabbitMQ 3.10 nacks every later publish of a channel that
			// first published to a quorum queue while its leader's node
			// was dying (RELIABILITY.md, quorum-queue node kill); what
			// else was in flight on it is published again.
			_ = pc.ch.Close()
		default:
			if reason, ok := pc.claimReturn(e.key); ok {
				e.state, e.err = entryFailed, fmt.Errorf("amqp: %w: returned by the broker (%s): no queue is bound to exchange %q for routing key %q", message.ErrUnroutable, reason, e.key.exchange, e.key.routingKey)
			} else {
				e.state = entryOK
			}
		}
	}
	return entries, pc.sess.conn.IsClosed(), nil
}

// Close waits for Publish calls in progress (they still get their
// confirms), then closes the connection. Later calls return
// message.ErrClosed. It is safe to call more than once.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closing = true
		p.mu.Unlock()
		// Calls waiting for a channel or a reconnection give up now;
		// calls waiting for confirms on a live channel get them.
		close(p.closed)
		p.conn.stop()
		p.calls.Wait()
		for _, s := range p.slots {
			if pc := s.pc.Load(); pc != nil {
				_ = pc.ch.Close()
			}
		}
		p.conn.close()
	})
	return nil
}
