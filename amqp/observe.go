package amqp

import (
	"context"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// System is this adapter's messaging.system, in Delivery.System and
// message.Event.System.
const System = "rabbitmq"

// DefaultLagInterval is how often a Subscriber with an observer polls the
// depth of its group's queues (WithLagInterval).
const DefaultLagInterval = 5 * time.Second

// WithObserver adds o to the observers of the adapter's events
// (message.Observer): connection losses, failed reconnection attempts and
// reconnections (EventConnectionLost, EventConnectionRestored, with the
// redacted URL); on a Publisher each Publish call (EventPublished,
// EventPublishFailed); on a Subscriber each handled message and handler
// error (EventHandled, EventHandlerError) and the depth of each of the
// group's queues (EventLag: the queue's ready messages from a passive
// queue.declare every WithLagInterval on a channel of its own, reported
// when it changed; Partition is the shard, -1 for the one queue of
// competing consumers; Lag -1 when Subscribe returns). otelferry's
// Telemetry is one. Several WithObserver calls add up; WithLogger adds
// message.LogEvents. A nil o is skipped; a typed nil is an error wrapping
// message.ErrInvalidConfig. Publisher and Subscriber. Default: none.
func WithObserver(o message.Observer) Option {
	return sharedOpt(func(c *config) error {
		if o == nil {
			return nil
		}
		if isnil.Is(o) {
			return invalid("WithObserver: the observer is a typed nil")
		}
		c.observers = append(c.observers, o)
		return nil
	})
}

// WithLagInterval sets how often a Subscriber with an observer polls its
// queues' depth for EventLag (one passive queue.declare per queue), at
// least 10 ms. Without an observer nothing is polled. Default:
// DefaultLagInterval (5 s).
func WithLagInterval(d time.Duration) SubscriberOption {
	return subOpt(func(c *config) error {
		if d < 10*time.Millisecond {
			return invalid("WithLagInterval(%v): want at least 10ms", d)
		}
		c.lagInterval = d
		return nil
	})
}

// MessagingSystem returns System, for instrumentation such as otelferry.
func (p *Publisher) MessagingSystem() string { return System }

// MessagingSystem returns System, for instrumentation such as otelferry.
func (s *Subscriber) MessagingSystem() string { return System }

// finishObservers combines the observers once the options are applied.
func (c *config) finishObservers() {
	c.obs = message.Observers(append(c.observers, message.LogEvents(c.logger))...)
}

// observeState turns a connection state change into an event.
func (c *config) observeState(sc StateChange) {
	o := c.obs
	if o == nil {
		return
	}
	ev := message.Event{System: System, Partition: -1, Broker: sc.URL, Role: sc.Role, State: sc.State.String(),
		Attempt: sc.Attempt, Err: sc.Err}
	switch sc.State {
	case StateConnected:
		ev.Kind = message.EventConnectionRestored
	case StateDisconnected, StateReconnecting:
		ev.Kind = message.EventConnectionLost
	default:
		return
	}
	o.Observe(context.Background(), ev)
}

// observePublish reports the outcome of a Publish call.
func observePublish(ctx context.Context, o message.Observer, topic string, msgs []*message.Message, start time.Time, err error) {
	adapter.ObservePublish(ctx, o, System, topic, msgs, start, err)
}

// handlerErrorObserver is the dispatcher's error observer: the event for
// each handler error; nil without an observer.
func (c *config) handlerErrorObserver() func(*dispatch.Delivery, error) {
	return dispatch.ErrorObserver(c.obs)
}

func (c *config) observeHandled(dl *dispatch.Delivery) { dispatch.ObserveHandled(c.obs, dl) }

// startLag starts polling the depth of the group's queues on topic while
// ctx lasts, when there is an observer; the returned function stops it
// and waits for it.
func (s *Subscriber) startLag(ctx context.Context, topic string) func() {
	o := s.cfg.obs
	if o == nil {
		return func() {}
	}
	topo, err := s.cfg.topologyFor(topic, s.cfg.Group)
	if err != nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.pollLag(ctx, o, topic, topo)
	}()
	return func() { cancel(); <-done }
}

func (s *Subscriber) pollLag(ctx context.Context, o message.Observer, topic string, topo groupTopology) {
	queues, first := topo.shards, int32(0)
	if queues == nil {
		queues, first = []string{topo.base}, -1
	}
	last := make([]int64, len(queues))
	for i := range last {
		last[i] = -1
	}
	emit := func(i int, lag int64) {
		o.Observe(ctx, message.Event{Kind: message.EventLag, System: System, Topic: topic, Group: s.cfg.Group,
			Partition: first + int32(i), Lag: lag})
	}
	defer func() {
		for i, n := range last {
			if n >= 0 {
				emit(i, -1)
			}
		}
	}()
	iv := s.cfg.lagInterval
	if iv <= 0 {
		iv = DefaultLagInterval
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sess, err := s.conn.get(ctx)
		if err != nil {
			return
		}
		ch, err := sess.conn.Channel()
		if err != nil {
			continue
		}
		for i, q := range queues {
			qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			if err != nil {
				break // not declared yet, or the connection went: the channel is closed
			}
			if n := int64(qi.Messages); n != last[i] {
				last[i] = n
				emit(i, n)
			}
		}
		_ = ch.Close()
	}
}
