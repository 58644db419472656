package inmem

import (
	"context"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/internal/isnil"
	"github.com/ferrymsg/ferry/message"
)

// System is this adapter's messaging.system, in Delivery.System and
// message.Event.System. The OpenTelemetry conventions have no name for an
// in-process broker; this one is ferry's.
const System = "inmem"

// lagInterval is how often a Subscriber with an observer reports the lag
// of its partitions (those that changed).
const lagInterval = 100 * time.Millisecond

// PublisherOption configures a Publisher (NewPublisher). A nil
// PublisherOption is skipped.
type PublisherOption interface {
	applyPublisher(*pubConfig) error
}

// Option configures a Publisher and a Subscriber alike.
type Option interface {
	PublisherOption
	SubscriberOption
}

type pubConfig struct {
	observers []message.Observer
}

// observerOpt is WithObserver's Option.
type observerOpt struct{ o message.Observer }

func (w observerOpt) check() error {
	if w.o != nil && isnil.Is(w.o) {
		return invalid("WithObserver: the observer is a typed nil")
	}
	return nil
}

func (w observerOpt) applyPublisher(c *pubConfig) error {
	if err := w.check(); err != nil || w.o == nil {
		return err
	}
	c.observers = append(c.observers, w.o)
	return nil
}

func (w observerOpt) applySubscriber(c *subConfig) error {
	if err := w.check(); err != nil || w.o == nil {
		return err
	}
	c.observers = append(c.observers, w.o)
	return nil
}

// WithObserver adds o to the observers of the adapter's events
// (message.Observer): on a Publisher each Publish call (EventPublished,
// EventPublishFailed); on a Subscriber each handled message and handler
// error (EventHandled, EventHandlerError) and the lag of each partition it
// owns (EventLag: appended minus the group's commit point, reported every
// 100 ms when it changed; Lag -1 when the partition left the subscriber).
// otelferry's Telemetry is one. Several WithObserver calls add up;
// WithLogger adds message.LogEvents. A nil o is skipped; a typed nil is an
// error wrapping message.ErrInvalidConfig. Publisher and Subscriber.
// Default: none.
func WithObserver(o message.Observer) Option { return observerOpt{o} }

// MessagingSystem returns System, for instrumentation such as otelferry.
func (p *Publisher) MessagingSystem() string { return System }

// MessagingSystem returns System, for instrumentation such as otelferry.
func (s *Subscriber) MessagingSystem() string { return System }

func newPubConfig(opts []PublisherOption) (pubConfig, error) {
	var c pubConfig
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyPublisher(&c); err != nil {
			return c, err
		}
	}
	return c, nil
}

// observer returns the Subscriber's observers with WithLogger's.
func (c *subConfig) observer() message.Observer {
	return message.Observers(append(c.observers, message.LogEvents(c.logger))...)
}

// onHandlerError is the dispatcher's error observer: the event for each
// handler error; nil without an observer.
func (c *subConfig) onHandlerError() func(*dispatch.Delivery, error) {
	return dispatch.ErrorObserver(c.obs)
}

func (c *subConfig) observeHandled(d *dispatch.Delivery) { dispatch.ObserveHandled(c.obs, d) }

// observePublish reports the outcome of a Publish call.
func observePublish(ctx context.Context, o message.Observer, topic string, msgs []*message.Message, start time.Time, err error) {
	adapter.ObservePublish(ctx, o, System, topic, msgs, start, err)
}

// startLag reports the lag of m's partitions every lagInterval while ctx
// lasts, when there is an observer; the returned function stops it and
// waits for it.
func (s *Subscriber) startLag(ctx context.Context, t *topic, g *group, m *member) func() {
	o := s.conf.obs
	if o == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := make(map[int]int64)
		emit := func(i int, lag int64) {
			o.Observe(ctx, message.Event{Kind: message.EventLag, System: System, Topic: t.name, Group: g.name,
				Partition: int32(i), Lag: lag})
		}
		defer func() {
			for i := range last {
				emit(i, -1)
			}
		}()
		tick := time.NewTicker(lagInterval)
		defer tick.Stop()
		lags := make(map[int]int64)
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			clear(lags)
			t.mu.Lock()
			for i, gp := range g.parts {
				if gp.owner != m {
					continue
				}
				end := t.parts[i].end()
				gp.mu.Lock()
				lags[i] = max(end-gp.tr.Next(), 0)
				gp.mu.Unlock()
			}
			t.mu.Unlock()
			for i, prev := range last {
				if _, ok := lags[i]; !ok {
					delete(last, i)
					emit(i, -1)
				} else if lags[i] == prev {
					delete(lags, i)
				}
			}
			for i, lag := range lags {
				last[i] = lag
				emit(i, lag)
			}
		}
	}()
	return func() { cancel(); <-done }
}
