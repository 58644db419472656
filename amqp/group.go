package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// A sharded group member: one Subscribe call on a sharded group.
//
// The member owns a subset of the group's shard queues and consumes each
// owned shard on a channel of its own. Shard queues have a single active
// consumer, so the broker itself never lets two consumers receive from a
// shard at once. Which shards a
// member should own follows from the members it knows of: sorted by ID,
// shard s belongs to member s mod M. Members learn of each other through
// heartbeats on the group's members exchange. All members compute the same
// assignment from the same view; while views differ (a member joined or
// vanished a moment ago) a claim of a shard still held by another member
// waits as the broker's standby consumer until the holder lets go.
//
// States of one shard, as this member sees it:
//
//	free ──claim: consume ok──▶ owned (while another member still holds
//	    the shard, the broker keeps this consumer as its standby, receiving
//	    nothing, and activates it when the other lets go)
//	owned ──not assigned to us any more──▶ releasing
//	releasing: the feeder stops; queued and backing-off deliveries of the
//	    shard leave the dispatcher (Drain); running handlers finish and
//	    are acked (their context is cancelled after the drain timeout)
//	    ──all done──▶ channel closed (the broker requeues what
//	    was prefetched, in queue order) ──▶ free
//	owned or releasing ──channel or connection lost──▶ free (the broker has
//	    requeued the unacked deliveries; running handlers finish, unacked)
//
// A shard thus moves to another member only after every delivery it handed
// this member is settled or back in the queue: no key runs on two members
// at once, and the next owner starts from the oldest unsettled message.
// The exception is a lost connection while handlers still run: the broker
// requeues their messages at once. Other members take over the shards only
// when this member's heartbeats stop for four intervals, so a handler
// shorter than that does not overlap with the new owner.

// memberTimeouts is how many heartbeat intervals without news make a peer
// count as gone.
const memberTimeouts = 4

// member is one Subscribe call's membership in a sharded group.
type member struct {
	s     *Subscriber
	topic string
	topo  groupTopology
	d     *dispatch.Dispatcher
	id    string

	peers  map[string]time.Time // other members, last heard from
	warned map[string]bool      // peers whose shard count differs, logged once
	owned  map[int]*shard
	events chan shardEvent
}

// shard is an owned shard queue.
type shard struct {
	idx       int
	c         *consumer
	cancel    context.CancelFunc // stops the feeder
	fed       chan struct{}      // closed when the feeder returned
	releasing bool
	careful   bool // consumed with prefetch 1 after undecodable deliveries (session.careful)
}

type shardEvent struct {
	sh   *shard
	lost bool // the channel died (else: a release finished draining)
}

func newMemberID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// runGroup consumes topic as a member of the sharded group until rctx ends
// or a fatal error.
func (s *Subscriber) runGroup(rctx context.Context, topic string, d *dispatch.Dispatcher) error {
	topo, err := s.cfg.topologyFor(topic, s.cfg.Group)
	if err != nil {
		return err
	}
	m := &member{
		s: s, topic: topic, topo: topo, d: d, id: newMemberID(),
		peers: map[string]time.Time{}, warned: map[string]bool{},
		owned: map[int]*shard{}, events: make(chan shardEvent, len(topo.shards)),
	}
	defer m.shutdown()
	for {
		sess, err := s.conn.get(rctx)
		if err != nil {
			return nil
		}
		err = m.session(rctx, sess)
		if rctx.Err() != nil {
			return nil
		}
		if errors.Is(err, message.ErrInvalidConfig) {
			return err
		}
		if err != nil {
			s.log("ferry amqp: group member lost its session; rejoining", "topic", topic, "group", s.cfg.Group, "err", err.Error())
		}
		m.dropAll()
		if s.conn.pause(rctx, sess, s.cfg.reconnect[0]) != nil {
			return nil
		}
	}
}

// session runs the member on one connection until it fails or rctx ends.
func (m *member) session(rctx context.Context, sess *session) error {
	ctl, err := sess.conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: open channel: %w", m.s.conn.scrub(err))
	}
	defer func() { _ = ctl.Close() }()
	if err := m.s.cfg.declareExchange(ctl, m.topic); err != nil {
		return err
	}
	if _, err := m.s.cfg.declareGroup(ctl, m.topic, m.s.cfg.Group); err != nil {
		return err
	}
	if err := ctl.ExchangeDeclare(m.topo.members, amqp091.ExchangeFanout, false, true, false, false, nil); err != nil {
		return declareErr(fmt.Sprintf("declare fanout exchange %q", m.topo.members), err)
	}
	q, err := ctl.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return declareErr("declare member queue", err)
	}
	if err := ctl.QueueBind(q.Name, "", m.topo.members, false, nil); err != nil {
		return declareErr(fmt.Sprintf("bind member queue to %q", m.topo.members), err)
	}
	beats, err := ctl.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return declareErr("consume member queue", err)
	}
	ctlClosed := ctl.NotifyClose(make(chan *amqp091.Error, 1))

	stable := sess.stable // nil unless the session is careful
	hb := m.s.cfg.heartbeat
	tick := time.NewTicker(hb)
	defer tick.Stop()
	m.announce(ctl, "hello")
	m.rebalance(rctx, sess)
	// Ready (message.WithReady): the group's queues are declared and
	// bound, so what is published from now on is kept for the group, and
	// the member announced itself and tried its first shard claims.
	message.SignalReady(rctx)
	for {
		select {
		case <-rctx.Done():
			m.leave(ctl)
			return nil
		case <-sess.down:
			return errors.New("connection lost")
		case e := <-ctlClosed:
			if e != nil {
				return m.s.conn.scrub(e)
			}
			return errors.New("member channel closed")
		case dv, ok := <-beats:
			if !ok {
				return errors.New("member queue consumer cancelled")
			}
			if m.heard(string(dv.Body)) {
				m.announce(ctl, "beat") // let a newcomer learn of us at once
				m.rebalance(rctx, sess)
			}
		case ev := <-m.events:
			if m.owned[ev.sh.idx] != ev.sh {
				continue // already dropped
			}
			delete(m.owned, ev.sh.idx)
			ev.sh.cancel()
			if ev.lost {
				// The broker has requeued its unacked deliveries: drop
				// the ones not running (running ones finish unacked).
				<-ev.sh.fed
				m.remove(ev.sh)
			}
			m.s.acks.flush() // a released shard's acks go before its channel closes
			_ = ev.sh.c.ch.Close()
			m.rebalance(rctx, sess)
		case <-stable:
			// The careful connection held: hand back the shards taken
			// with prefetch 1 (drained and acked as on any release);
			// rebalance claims them again with the normal prefetch.
			stable = nil
			for _, sh := range m.owned {
				if sh.careful && !sh.releasing {
					m.release(rctx, sh)
				}
			}
		case <-tick.C:
			m.announce(ctl, "beat")
			cutoff := time.Now().Add(-memberTimeouts * hb)
			for id, seen := range m.peers {
				if seen.Before(cutoff) {
					delete(m.peers, id)
				}
			}
			m.rebalance(rctx, sess)
		}
	}
}

// announce publishes a heartbeat ("hello", "beat") or "leave" with the
// member's ID and shard count.
func (m *member) announce(ctl *amqp091.Channel, kind string) {
	body := kind + " " + m.id + " " + strconv.Itoa(len(m.topo.shards))
	// Best effort: a failure shows as the channel closing.
	_ = ctl.Publish(m.topo.members, "", false, false, amqp091.Publishing{Body: []byte(body), Expiration: strconv.Itoa(int(4 * m.s.cfg.heartbeat / time.Millisecond))})
}

// heard applies a member announcement and reports whether the view of the
// group changed.
func (m *member) heard(body string) bool {
	f := strings.Fields(body)
	if len(f) != 3 || f[1] == m.id {
		return false
	}
	id := f[1]
	if f[0] == "leave" {
		_, known := m.peers[id]
		delete(m.peers, id)
		return known
	}
	if n, err := strconv.Atoi(f[2]); err == nil && n != len(m.topo.shards) && !m.warned[id] {
		m.warned[id] = true
		if l := m.s.cfg.logger; l != nil {
			l.Error("ferry amqp: group members disagree on the shard count; give every member the same WithShards",
				"topic", m.topic, "group", m.s.cfg.Group, "mine", len(m.topo.shards), "peer", id, "theirs", n)
		}
	}
	_, known := m.peers[id]
	m.peers[id] = time.Now()
	return !known
}

// assigned reports whether shard i is this member's in the current view.
func (m *member) assigned(i int) bool {
	ids := make([]string, 0, len(m.peers)+1)
	ids = append(ids, m.id)
	for id := range m.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids[i%len(ids)] == m.id
}

// rebalance releases owned shards that are no longer ours and claims free
// ones that are.
func (m *member) rebalance(rctx context.Context, sess *session) {
	for i := range m.topo.shards {
		sh := m.owned[i]
		switch want := m.assigned(i); {
		case sh != nil && !want && !sh.releasing:
			m.release(rctx, sh)
		case sh == nil && want:
			if rctx.Err() != nil || sess.isDown() {
				return
			}
			m.claim(rctx, sess, i)
		}
	}
}

// claim registers a consumer on shard i.
func (m *member) claim(rctx context.Context, sess *session, i int) {
	name := m.topo.shards[i]
	ch, err := sess.conn.Channel()
	if err != nil {
		return
	}
	prefetch := sess.prefetch(m.s.cfg.prefetchCount())
	if err := ch.Qos(prefetch, 0, false); err != nil {
		_ = ch.Close()
		return
	}
	c := &consumer{ch: ch, tag: "ferry-" + m.id + "-" + strconv.Itoa(i)}
	// The shard queue has a single active consumer: while another member
	// still holds the shard (it is draining it, or its view of the group
	// is behind), this consumer waits as the standby and receives nothing;
	// the broker activates it the moment the other one lets go.
	c.deliveries, err = ch.Consume(name, c.tag, false, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		return
	}
	c.scope = m.d.NewScope() // drained when the shard is let go (remove)
	fctx, cancel := context.WithCancel(rctx)
	sh := &shard{idx: i, c: c, cancel: cancel, fed: make(chan struct{}), careful: prefetch < m.s.cfg.prefetchCount()}
	m.owned[i] = sh
	go m.feed(fctx, sh)
}

// feed hands the shard's deliveries to the dispatcher until its context
// ends or the channel dies.
func (m *member) feed(ctx context.Context, sh *shard) {
	defer close(sh.fed)
	for {
		select {
		case <-ctx.Done():
			return
		case dv, ok := <-sh.c.deliveries:
			if !ok {
				select {
				case m.events <- shardEvent{sh: sh, lost: true}:
				case <-ctx.Done():
				}
				return
			}
			msg := m.s.cfg.toMessage(m.topic, m.s.cfg.Group, &dv)
			msg.Delivery.Partition = int32(sh.idx)
			if err := m.d.Submit(ctx, &dispatch.Delivery{Msg: msg, Ref: &ref{c: sh.c, tag: dv.DeliveryTag}, Scope: sh.c.scope}); err != nil {
				return
			}
		}
	}
}

// remove drains the shard's scope: its deliveries that are not running
// leave the dispatcher, its running handlers' context is cancelled once
// the drain timeout passed, and the returned channel is closed when none
// of them runs any more.
func (m *member) remove(sh *shard) <-chan struct{} {
	return m.d.Drain(sh.c.scope)
}

// release starts handing a shard back: stop feeding, drop what has not
// started, and report when the running handlers are done (and acked).
func (m *member) release(rctx context.Context, sh *shard) {
	sh.releasing = true
	sh.cancel()
	go func() {
		<-sh.fed
		idle := m.remove(sh)
		select {
		case <-idle:
		case <-rctx.Done():
			return // shutdown drains and closes it
		}
		select {
		case m.events <- shardEvent{sh: sh}:
		case <-rctx.Done():
		}
	}()
}

// dropAll forgets every shard after the session was lost: the broker has
// requeued their unacked deliveries.
func (m *member) dropAll() {
	for i, sh := range m.owned {
		sh.cancel()
		<-sh.fed
		m.remove(sh)
		_ = sh.c.ch.Close()
		delete(m.owned, i)
	}
}

// leave tells the group this member is going, once its shards are closed.
func (m *member) leave(ctl *amqp091.Channel) {
	m.stopShards()
	m.announce(ctl, "leave")
}

// stopShards stops feeding, lets running handlers finish and ack (the
// dispatcher's Shutdown), then closes the shard channels, which requeues
// the rest. The consumers are not cancelled first: a cancelled consumer
// frees the shard for another member while this one still holds
// unacked deliveries of it, which would then run after newer ones.
func (m *member) stopShards() {
	for _, sh := range m.owned {
		sh.cancel()
	}
	for _, sh := range m.owned {
		<-sh.fed
	}
	m.d.Shutdown()
	m.s.acks.flush()
	for i, sh := range m.owned {
		_ = sh.c.ch.Close()
		delete(m.owned, i)
	}
}

func (m *member) shutdown() { m.stopShards() }
