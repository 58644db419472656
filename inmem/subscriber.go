package inmem

import (
	"context"
	"fmt"
	"sync"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// Subscriber consumes topics of a Broker as a member of a group. Create it
// with NewSubscriber.
type Subscriber struct {
	b    *Broker
	conf subConfig

	life adapter.Lifecycle // the running Subscribe calls; Close cancels them
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a subscriber to b configured by opts. A nil
// broker or a bad option value fails with an error wrapping
// message.ErrInvalidConfig that names the option; nil options are skipped.
func NewSubscriber(b *Broker, opts ...SubscriberOption) (*Subscriber, error) {
	if b == nil {
		return nil, fmt.Errorf("inmem: %w: nil broker", message.ErrInvalidConfig)
	}
	c, err := newSubConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Subscriber{b: b, conf: c}, nil
}

// Close stops every running Subscribe call (they drain, then return
// message.ErrClosed) and waits for them. Later calls return ErrClosed.
// Safe to call more than once.
func (s *Subscriber) Close() error {
	s.life.Close()
	return nil
}

// member is one Subscribe call's membership in a group.
type member struct {
	wake chan struct{}

	// The dispatcher scope of each partition's deliveries (scopes[i],
	// fetched under the assignment epochs[i]), so that a revocation
	// drains just that partition. Used only by the member's Subscribe
	// goroutine.
	disp   *dispatch.Dispatcher
	scopes []*dispatch.Scope
	epochs []uint64
	tier   *tierGate // SubscribeTier's (delay.go); nil for Subscribe
}

// scope returns the scope of partition i's deliveries under epoch: a new
// one at each new assignment. The previous assignment's scope was drained
// before the partition could be assigned again.
func (m *member) scope(i int, epoch uint64) *dispatch.Scope {
	if m.scopes[i] == nil || m.epochs[i] != epoch {
		m.scopes[i], m.epochs[i] = m.disp.NewScope(), epoch
	}
	return m.scopes[i]
}

func (m *member) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// ref identifies a delivery's position for settlement.
type ref struct {
	part  int
	off   int64
	epoch uint64
}

// delivery bundles a delivered message and its dispatcher entry in one
// allocation.
type delivery struct {
	msg message.Message
	dl  dispatch.Delivery
	ref ref
}

// Subscribe joins the subscriber's group on topic and calls h for each
// message until ctx is cancelled (returns nil after draining), Close is
// called on the subscriber or broker (message.ErrClosed), or the input is
// bad. See the package documentation for the delivery semantics.
func (s *Subscriber) Subscribe(ctx context.Context, topicName string, h message.Handler) error {
	if h == nil {
		return fmt.Errorf("inmem: subscribe %q: %w", topicName, message.ErrNilHandler)
	}
	return s.subscribe(ctx, topicName, h, nil)
}

// subscribe is Subscribe, or SubscribeBatch when bat is set (batch.go).
func (s *Subscriber) subscribe(ctx context.Context, topicName string, h message.Handler, bat *dispatch.Batch) error {
	if err := adapter.ValidateLogTopic(topicName); err != nil {
		return fmt.Errorf("inmem: subscribe: %w", err)
	}
	// rctx ends with ctx or when Close is called.
	rctx, end, err := s.life.Begin(ctx)
	if err != nil {
		return fmt.Errorf("inmem: subscribe %q: %w", topicName, err)
	}
	defer end()

	t, err := s.b.topic(topicName)
	if err != nil {
		return fmt.Errorf("inmem: subscribe %q: %w", topicName, err)
	}
	m := &member{wake: make(chan struct{}, 1)}
	t.mu.Lock()
	g := t.groupLocked(s.conf.Group)
	g.members = append(g.members, m)
	t.rebalanceLocked(g)
	t.mu.Unlock()
	t.signalSettled() // a waiter may wait for the group to exist

	cfg := dispatch.ConfigFor(s.conf.SubscriberConfig)
	cfg.OnError = s.conf.onHandlerError()
	// settleLocked settles r (under gp.mu): it reports whether the commit
	// point moved and whether the partition is due for trimming.
	settleLocked := func(gp *groupPart, r *ref) (moved, trim bool) {
		if gp.setOwner == m && gp.setEpoch == r.epoch && gp.tr.Settle(r.off) {
			moved = true
			if gp.sinceTrim++; gp.sinceTrim >= 256 {
				gp.sinceTrim, trim = 0, true
			}
		}
		return moved, trim
	}
	trim := func(part int) {
		t.mu.Lock()
		t.trimLocked(part)
		t.mu.Unlock()
	}
	settled := func(d *dispatch.Delivery) {
		s.conf.observeHandled(d)
		r := d.Ref.(*ref)
		gp := g.parts[r.part]
		gp.mu.Lock()
		moved, due := settleLocked(gp, r)
		gp.mu.Unlock()
		if moved {
			t.signalSettled()
		}
		if due {
			trim(r.part)
		}
	}
	if bat != nil {
		// A batch's settled deliveries: one lock of a partition's
		// offsets for each run of them in the same partition.
		b := *bat
		b.Settled = func(dls []*dispatch.Delivery) {
			for _, d := range dls {
				s.conf.observeHandled(d)
			}
			anyMoved := false
			for i := 0; i < len(dls); {
				part := dls[i].Ref.(*ref).part
				gp := g.parts[part]
				dueAny := false
				gp.mu.Lock()
				for ; i < len(dls); i++ {
					r := dls[i].Ref.(*ref)
					if r.part != part {
						break
					}
					moved, due := settleLocked(gp, r)
					anyMoved = anyMoved || moved
					dueAny = dueAny || due
				}
				gp.mu.Unlock()
				if dueAny {
					trim(part)
				}
			}
			if anyMoved {
				t.signalSettled()
			}
		}
		cfg.Batch = &b
	}
	// Each assignment of a partition is a dispatcher scope (member.scope),
	// so that a revocation drains it and, after the drain timeout, cancels
	// the context of its handlers only (drainer.start).
	disp := dispatch.New(ctx, h, cfg, settled)
	m.disp, m.scopes, m.epochs = disp, make([]*dispatch.Scope, len(g.parts)), make([]uint64, len(g.parts))
	m.tier = newTierGate(rctx, disp, m, len(g.parts), g.name)
	maxPending := disp.Config().MaxPending
	dr := drainer{t: t, g: g, m: m, disp: disp, quit: make(chan struct{})}
	// Ready: the member is in its group, whose offsets exist, so anything
	// published from now on reaches it (message.WithReady).
	message.SignalReady(ctx)
	stopLag := s.startLag(rctx, t, g, m) // with an observer (observe.go)

	var result error
	raw := make([]fetched, 0, 256)
	batch := make([]*delivery, 0, 256)
	dls := make([]*dispatch.Delivery, 0, 256)
	var revoked []int
loop:
	for {
		t.mu.Lock()
		revoked = revoked[:0]
		for i, gp := range g.parts {
			if gp.owner == m && gp.revoking && !gp.draining {
				gp.draining = true // fetch nothing more of it
				revoked = append(revoked, i)
			}
		}
		if len(revoked) > 0 {
			t.mu.Unlock()
			// Everything fetched of these partitions is in the
			// dispatcher (a batch is submitted before the loop comes
			// back here), so this drops all of their queued work.
			for _, i := range revoked {
				dr.start(i)
			}
			continue
		}
		room := maxPending - disp.Pending()
		raw = raw[:0]
		if room > 0 {
			raw = fetchLocked(t, g, m, min(room, cap(raw)), raw)
		}
		var wait <-chan struct{}
		switch {
		case room <= 0:
			wait = disp.Space() // a settlement makes room
		case len(raw) == 0:
			wait = t.waitChLocked() // the next append
		}
		t.mu.Unlock()
		batch = makeDeliveries(raw, topicName, g.name, m, batch[:0])

		if m.tier != nil {
			_ = m.tier.add(batch) // fails only when rctx is done, as below
		} else if len(batch) > 0 {
			dls = dls[:0]
			for _, d := range batch {
				dls = append(dls, &d.dl)
			}
			// One lock of the dispatcher for the whole fetch. An error
			// means rctx is done; what was not submitted is refetched by
			// the next owner.
			_, _ = disp.SubmitBatch(rctx, dls)
			clear(dls)
		}
		if len(batch) > 0 {
			select {
			case <-rctx.Done():
				break loop
			case <-s.b.done:
				result = message.ErrClosed
				break loop
			default:
				continue
			}
		}
		select {
		case <-wait:
		case <-m.wake:
		case <-rctx.Done():
			break loop
		case <-s.b.done:
			result = message.ErrClosed
			break loop
		}
	}

	// Shutdown returns once no handler runs, those of draining
	// partitions included; the drains then end (or are told to) before
	// the partitions are handed on.
	if rctx.Err() != nil && ctx.Err() == nil {
		result = message.ErrClosed // Close, not the caller's ctx
	}
	m.tier.close()
	disp.Shutdown()
	stopLag()
	close(dr.quit)
	dr.wg.Wait()
	t.mu.Lock()
	for _, gp := range g.parts {
		if gp.owner == m {
			gp.owner = nil // released below, which also ends a drain
		}
	}
	for i, mm := range g.members {
		if mm == m {
			g.members = append(g.members[:i], g.members[i+1:]...)
			break
		}
	}
	for i, gp := range g.parts {
		if gp.owner == nil {
			t.releaseLocked(g, i)
		}
	}
	t.rebalanceLocked(g)
	t.mu.Unlock()
	if result != nil {
		return fmt.Errorf("inmem: subscribe %q: %w", topicName, result)
	}
	return nil
}

// fetched is a message taken from a partition under the topic lock.
type fetched struct {
	msg         *entry // read outside the lock: see partition
	ref         ref
	redelivered bool
}

// fetchLocked collects up to n messages from m's partitions.
func fetchLocked(t *topic, g *group, m *member, n int, out []fetched) []fetched {
	for i, gp := range g.parts {
		if gp.owner != m || gp.revoking || gp.draining || m.tier.isPaused(i) {
			continue
		}
		p := t.parts[i]
		if gp.fetched < p.base {
			gp.fetched = p.base
		}
		if gp.fetched < p.end() {
			m.scope(i, gp.epoch)
		}
		for gp.fetched < p.end() && len(out) < n {
			off := gp.fetched
			out = append(out, fetched{
				msg:         p.at(off),
				ref:         ref{part: i, off: off, epoch: gp.epoch},
				redelivered: off < gp.delivered,
			})
			gp.fetched++
		}
		gp.delivered = max(gp.delivered, gp.fetched)
		if len(out) == n {
			break
		}
	}
	return out
}

// makeDeliveries turns fetched messages into deliveries, outside the lock,
// each in its partition's scope (set by fetchLocked).
func makeDeliveries(raw []fetched, topicName, group string, m *member, batch []*delivery) []*delivery {
	// One allocation per batch: the batch's deliveries share an array,
	// which lives until the last of them is settled or dropped.
	ds := make([]delivery, len(raw))
	for i, f := range raw {
		d := &ds[i]
		e := f.msg
		d.ref = f.ref
		d.msg = message.Message{
			ID: e.id, Key: e.key, Payload: e.payload, Headers: e.headers, Time: e.time,
			Delivery: message.Delivery{
				System: System, Topic: topicName, Group: group, Attempt: 1,
				Partition: int32(f.ref.part), Offset: f.ref.off,
			},
		}
		if f.redelivered {
			d.msg.Delivery.Attempt = 2
			d.msg.Delivery.Redelivered = true
		}
		d.dl.Msg = &d.msg
		d.dl.Ref = &d.ref
		d.dl.Scope = m.scopes[f.ref.part]
		batch = append(batch, d)
	}
	return batch
}

// drainer gives up partitions of one Subscribe call. Each revoked
// partition is drained on its own, so that a slow handler holds up nothing
// but its partition: the member goes on fetching and handling the others.
type drainer struct {
	t    *topic
	g    *group
	m    *member
	disp *dispatch.Dispatcher
	quit chan struct{} // closed when Subscribe returns
	wg   sync.WaitGroup
}

// start drains partition i's scope (dispatch.Dispatcher.Drain): its queued
// deliveries, which were all submitted already, leave the dispatcher, and
// its running handlers' context is cancelled once the drain timeout
// passed. It waits in the background for them to return. The caller
// marked the partition draining; only the member's Subscribe goroutine
// calls start.
func (dr *drainer) start(i int) {
	dr.m.tier.drop(i) // nothing of i held by a tier's gate is submitted from now on
	s := dr.m.scopes[i]
	if s == nil {
		s = dr.disp.NewScope() // nothing fetched of it yet
	}
	done := dr.disp.Drain(s)
	dr.wg.Go(func() { dr.wait(i, done) })
}

// wait waits for done (no handler of partition i runs any more) and then
// releases the partition: to the member that should own it now, or back
// to this member if the revocation was cancelled meanwhile. Either way
// the owner starts at the commit point under a new epoch (and so in a new
// scope), so the dropped deliveries are fetched again and the key order
// holds.
//
// A handler that ignores its cancelled context keeps the partition here:
// it is not handed to another member while one of its handlers runs, so a
// key never runs on two members at once. If the Subscribe call stops
// meanwhile (quit), its shutdown waits for the handlers and hands the
// partition on.
func (dr *drainer) wait(i int, done <-chan struct{}) {
	select {
	case <-done:
	case <-dr.quit:
		return
	}
	dr.t.mu.Lock()
	if gp := dr.g.parts[i]; gp.owner == dr.m && gp.draining {
		dr.t.releaseLocked(dr.g, i)
	}
	dr.t.mu.Unlock()
}
