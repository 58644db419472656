package chanadapter

import (
	"context"
	"fmt"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// Subscriber consumes topics of a Broker as a member of a consumer group.
// Each Subscribe call is a member of its own.
type Subscriber struct {
	b    *Broker
	cfg  adapter.SubscriberConfig
	life adapter.Lifecycle
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a subscriber to b. Zero fields of cfg take the
// kit's defaults; a bad value fails with message.ErrInvalidConfig.
func NewSubscriber(b *Broker, cfg adapter.SubscriberConfig) (*Subscriber, error) {
	if b == nil {
		return nil, fmt.Errorf("chanadapter: %w: nil broker", message.ErrInvalidConfig)
	}
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("chanadapter: %w", err)
	}
	return &Subscriber{b: b, cfg: cfg}, nil
}

// Close stops every running Subscribe call (each drains, then returns
// message.ErrClosed) and waits for them. It is safe to call more than
// once.
func (s *Subscriber) Close() error {
	s.life.Close()
	return nil
}

// member is one Subscribe call in its group.
type member struct {
	wake chan struct{} // poked when the member's partitions change

	// Used by the member's Subscribe goroutine only: the dispatcher scope
	// of each partition's deliveries under the assignment epochs[i].
	scopes []*dispatch.Scope
	epochs []uint64
}

func (m *member) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// ref is where a delivery came from, for its settlement.
type ref struct {
	part  int
	off   int64
	epoch uint64
}

// delivery is a delivered message with its dispatcher entry, in one
// allocation.
type delivery struct {
	msg message.Message
	dl  dispatch.Delivery
	ref ref
}

// Subscribe joins the subscriber's group on topic and calls h for each
// message until ctx is cancelled (it drains and returns nil), Close is
// called on the subscriber or the broker (message.ErrClosed), or the
// input is bad.
func (s *Subscriber) Subscribe(ctx context.Context, topicName string, h message.Handler) error {
	if h == nil {
		return fmt.Errorf("chanadapter: subscribe %q: %w", topicName, message.ErrNilHandler)
	}
	return s.subscribe(ctx, topicName, h, nil)
}

// subscribe is Subscribe, or SubscribeBatch when bat is set (batch.go).
func (s *Subscriber) subscribe(ctx context.Context, topicName string, h message.Handler, bat *dispatch.Batch) error {
	if err := adapter.ValidateLogTopic(topicName); err != nil {
		return fmt.Errorf("chanadapter: subscribe: %w", err)
	}
	rctx, end, err := s.life.Begin(ctx) // ends with ctx or at Close
	if err != nil {
		return fmt.Errorf("chanadapter: subscribe %q: %w", topicName, err)
	}
	defer end()

	b := s.b
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("chanadapter: subscribe %q: %w", topicName, message.ErrClosed)
	}
	t := b.topicLocked(topicName)
	g := t.groupLocked(s.cfg.Group)
	m := &member{wake: make(chan struct{}, 1), scopes: make([]*dispatch.Scope, len(g.parts)), epochs: make([]uint64, len(g.parts))}
	g.members = append(g.members, m)
	g.rebalanceLocked()
	b.mu.Unlock()

	settled := func(dl *dispatch.Delivery) {
		r := dl.Ref.(*ref)
		b.mu.Lock()
		if gp := g.parts[r.part]; gp.owner == m && gp.epoch == r.epoch {
			gp.tr.Settle(r.off)
		}
		b.mu.Unlock()
	}
	dcfg := dispatch.ConfigFor(s.cfg)
	dcfg.Batch = bat
	d := dispatch.New(ctx, h, dcfg, settled)
	maxPending := d.Config().MaxPending
	// Ready: the member has joined its group and consumes from here on
	// (message.WithReady).
	message.SignalReady(ctx)

	closed := false
	var revoked []int
loop:
	for {
		room := maxPending - d.Pending()
		b.mu.Lock()
		revoked = revoked[:0]
		for i, gp := range g.parts {
			if gp.owner == m && gp.revoking && !gp.draining {
				gp.draining = true // fetch nothing more of it
				revoked = append(revoked, i)
			}
		}
		var batch []*dispatch.Delivery
		if len(revoked) == 0 && room > 0 {
			batch = s.fetchLocked(t, g, m, d, topicName, room)
		}
		var appended <-chan struct{}
		if len(batch) == 0 {
			appended = t.appendedLocked()
		}
		b.mu.Unlock()

		// A revoked partition goes once none of its handlers runs: Drain
		// drops its queued deliveries and cancels its running handlers'
		// context after the drain timeout. Everything fetched of it is in
		// the dispatcher already (a batch is submitted before the loop
		// comes back here).
		for _, i := range revoked {
			sc := m.scopes[i]
			if sc == nil {
				sc = d.NewScope() // nothing fetched of it
			}
			select {
			case <-d.Drain(sc):
			case <-rctx.Done():
				break loop // the shutdown below waits for the handlers
			}
			b.mu.Lock()
			if gp := g.parts[i]; gp.owner == m && gp.draining {
				g.releaseLocked(i)
			}
			b.mu.Unlock()
		}
		if len(revoked) > 0 {
			continue
		}
		if len(batch) > 0 {
			if _, err := d.SubmitBatch(rctx, batch); err != nil {
				break loop // rctx done: the next owner fetches what was not submitted
			}
			continue
		}
		var space <-chan struct{}
		if room <= 0 {
			space = d.Space()
		}
		select {
		case <-appended:
		case <-space:
		case <-m.wake:
		case <-rctx.Done():
			break loop
		case <-b.done:
			closed = true
			break loop
		}
	}
	if rctx.Err() != nil && ctx.Err() == nil {
		closed = true // Close, not the caller's ctx
	}

	// Graceful shutdown: in-flight handlers finish (their context is
	// cancelled after the drain timeout) and settle; then the member
	// leaves and its partitions go to the others from their commit point.
	d.Shutdown()
	b.mu.Lock()
	for i, mm := range g.members {
		if mm == m {
			g.members = append(g.members[:i], g.members[i+1:]...)
			break
		}
	}
	for i, gp := range g.parts {
		if gp.owner == m {
			g.releaseLocked(i)
		}
	}
	g.rebalanceLocked()
	b.mu.Unlock()
	if closed {
		return fmt.Errorf("chanadapter: subscribe %q: %w", topicName, message.ErrClosed)
	}
	return nil
}

// fetchLocked takes up to n messages from m's partitions, each delivery in
// its partition assignment's scope.
func (s *Subscriber) fetchLocked(t *topic, g *group, m *member, d *dispatch.Dispatcher, topicName string, n int) []*dispatch.Delivery {
	var out []*dispatch.Delivery
	for i, gp := range g.parts {
		if gp.owner != m || gp.revoking || gp.draining {
			continue
		}
		log := t.logs[i]
		if gp.fetched >= int64(len(log)) {
			continue
		}
		if m.scopes[i] == nil || m.epochs[i] != gp.epoch {
			m.scopes[i], m.epochs[i] = d.NewScope(), gp.epoch
		}
		for gp.fetched < int64(len(log)) && len(out) < n {
			off := gp.fetched
			dv := &delivery{msg: *log[off], ref: ref{part: i, off: off, epoch: gp.epoch}}
			dv.msg.Delivery = message.Delivery{Topic: topicName, Group: g.name, Attempt: 1, Partition: int32(i), Offset: off}
			if off < gp.delivered { // handed out before, not settled
				dv.msg.Delivery.Attempt, dv.msg.Delivery.Redelivered = 2, true
			}
			dv.dl = dispatch.Delivery{Msg: &dv.msg, Ref: &dv.ref, Scope: m.scopes[i]}
			out = append(out, &dv.dl)
			gp.fetched++
		}
		gp.delivered = max(gp.delivered, gp.fetched)
		if len(out) == n {
			break
		}
	}
	return out
}
