package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wmmsg "github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/message"
)

// amqpSystem: ferry's amqp adapter, raw amqp091-go with the same guarantees
// (persistent, mandatory messages with publisher confirms; manual ack with
// the prefetch ferry uses), and watermill-amqp (persistent, ConfirmDelivery,
// prefetch set to ferry's). Every variant uses the same topology: a durable
// topic exchange, one durable classic queue "<topic>.q" bound with "#".
type amqpSystem struct {
	url  string
	conn *amqp091.Connection
	ch   *amqp091.Channel // declarations and checks
	run  int64
	seq  atomic.Int64
}

func newAMQPSystem(url string) (*amqpSystem, error) {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return nil, fmt.Errorf("RabbitMQ at %s unreachable (run scripts/services.sh up): %w", url, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &amqpSystem{url: url, conn: conn, ch: ch, run: time.Now().Unix()}, nil
}

func (*amqpSystem) name() string       { return "amqp" }
func (*amqpSystem) variants() []string { return []string{"ferry", "raw", "watermill"} }
func (s *amqpSystem) close()           { _ = s.conn.Close() }

const amqpGroup = "q"

func (s *amqpSystem) declare(topic string) (string, error) {
	q := topic + "." + amqpGroup
	if err := s.ch.ExchangeDeclare(topic, "topic", true, false, false, false, nil); err != nil {
		return "", err
	}
	if _, err := s.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		return "", err
	}
	return q, s.ch.QueueBind(q, "#", topic, false, nil)
}

func (s *amqpSystem) remove(topic string) {
	_, _ = s.ch.QueueDelete(topic+"."+amqpGroup, false, false, false)
	_ = s.ch.ExchangeDelete(topic, false, false)
}

func (s *amqpSystem) depth(q string) (int, error) {
	st, err := s.ch.QueueDeclarePassive(q, true, false, false, false, nil)
	return st.Messages, err
}

// confirmer is a confirm-mode channel with a return listener: raw
// amqp091's publish with the same guarantee as ferry's (confirmed, routed).
type confirmer struct {
	ch       *amqp091.Channel
	returned atomic.Int64
	done     chan struct{}
}

func newConfirmer(conn *amqp091.Connection) (*confirmer, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		return nil, err
	}
	c := &confirmer{ch: ch, done: make(chan struct{})}
	rets := ch.NotifyReturn(make(chan amqp091.Return, 1024))
	go func() {
		defer close(c.done)
		for range rets {
			c.returned.Add(1)
		}
	}()
	return c, nil
}

func (c *confirmer) publish(ctx context.Context, exchange string, ps [][]byte) error {
	dcs := make([]*amqp091.DeferredConfirmation, len(ps))
	for i, p := range ps {
		pub := amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: p}
		if cfg.rawProps {
			// diagnostic: the properties ferry sets (message id, timestamp,
			// a header table with ferry-time)
			now := time.Now()
			pub.MessageId = fakeID
			pub.Timestamp = now
			pub.Headers = amqp091.Table{"ferry-time": now.UnixMilli()}
		}
		dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, "", true, false, pub)
		if err != nil {
			return err
		}
		dcs[i] = dc
	}
	for _, dc := range dcs {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("nacked")
		}
	}
	if r := c.returned.Load(); r > 0 {
		return fmt.Errorf("%d messages returned unroutable", r)
	}
	return nil
}

// fakeID has the length of a ferry message ID (a UUIDv7 string).
const fakeID = "01900000-0000-7000-8000-000000000000"

func (c *confirmer) close() { _ = c.ch.Close(); <-c.done }

type amqpVariant struct {
	publish func(ctx context.Context, topic string, ps [][]byte) error
	consume func(ctx context.Context, topic string, chk *checker, concurrency int) error
	close   func()
}

func prefetchFor(concurrency int) int { return max(amqp.DefaultMinPrefetch, 16*concurrency) }

func (s *amqpSystem) cell(w workload, size int, v string, n int) (*cell, error) {
	var av *amqpVariant
	var err error
	switch v {
	case "ferry":
		av, err = s.ferry()
	case "raw":
		av, err = s.raw(w)
	case "watermill":
		av, err = s.watermill(w)
	default:
		return nil, errUnknown(w, v)
	}
	if err != nil {
		return nil, err
	}
	topic := fmt.Sprintf("fb.%d.%d", s.run, s.seq.Add(1))
	queue := topic + "." + amqpGroup
	c := &cell{n: n, close: func() { av.close(); s.remove(topic) }}
	ps := getPayloads(n, size).data
	one := func(ctx context.Context, p []byte) error { return av.publish(ctx, topic, [][]byte{p}) }
	pubSetup := func(ctx context.Context) error {
		if _, err := s.declare(topic); err != nil {
			return err
		}
		return one(ctx, warmPayload(size))
	}
	pubVerify := func(ctx context.Context) error {
		got, err := s.depth(queue)
		if err != nil {
			return err
		}
		if got != n+1 {
			return fmt.Errorf("queue %s holds %d messages, want %d (n + 1 warm-up)", queue, got, n+1)
		}
		return nil
	}
	switch w {
	case wPubBatch:
		c.setup = pubSetup
		c.run = func(ctx context.Context) error {
			return batches(n, cfg.batch, func(lo, hi int) error { return av.publish(ctx, topic, ps[lo:hi]) })
		}
		c.verify = pubVerify
	case wPub64:
		c.setup = pubSetup
		c.run = func(ctx context.Context) error {
			return parallel(ctx, n, 64, func(ctx context.Context, i int) error { return one(ctx, ps[i]) })
		}
		c.verify = pubVerify
	case wCons1, wCons16:
		c.setup = func(ctx context.Context) error {
			if _, err := s.declare(topic); err != nil {
				return err
			}
			cf, err := newConfirmer(s.conn)
			if err != nil {
				return err
			}
			defer cf.close()
			if err := batches(n, 5000, func(lo, hi int) error { return cf.publish(ctx, topic, ps[lo:hi]) }); err != nil {
				return fmt.Errorf("fill backlog: %w", err)
			}
			if d, err := s.depth(queue); err != nil || d != n {
				return fmt.Errorf("backlog queue holds %d messages, want %d (%v)", d, n, err)
			}
			return nil
		}
		c.chk = newChecker(n, size)
		c.run = func(ctx context.Context) error { return av.consume(ctx, topic, c.chk, conc(w)) }
		c.verify = func(ctx context.Context) error {
			// every ack reached the broker: the queue is empty
			deadline := time.Now().Add(10 * time.Second)
			for {
				d, err := s.depth(queue)
				if err != nil {
					return err
				}
				if d == 0 {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("queue %s still holds %d messages after consuming", queue, d)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	case wLatency:
		c.chk = newLatencyChecker(n, size)
		latencyCell(c, size, func(ctx context.Context, chk *checker) error { return av.consume(ctx, topic, chk, 1) }, one)
		setup := c.setup
		c.setup = func(ctx context.Context) error {
			if _, err := s.declare(topic); err != nil {
				return err
			}
			return setup(ctx)
		}
	}
	return c, nil
}

func (s *amqpSystem) ferry() (*amqpVariant, error) {
	pub, err := amqp.NewPublisher(s.url)
	if err != nil {
		return nil, err
	}
	return &amqpVariant{
		publish: func(ctx context.Context, topic string, ps [][]byte) error {
			return pub.Publish(ctx, topic, ferryMsgs(ps)...)
		},
		consume: func(ctx context.Context, topic string, chk *checker, concurrency int) error {
			sub, err := amqp.NewSubscriber(s.url, amqp.WithGroup(amqpGroup), amqp.WithConcurrency(concurrency))
			if err != nil {
				return err
			}
			defer sub.Close()
			return runUntil(ctx, chk, func(ctx context.Context) error {
				return sub.Subscribe(ctx, topic, func(_ context.Context, m *message.Message) error {
					chk.got(m.Payload)
					return nil
				})
			})
		},
		close: func() { _ = pub.Close() },
	}, nil
}

func (s *amqpSystem) raw(w workload) (*amqpVariant, error) {
	conn, err := amqp091.Dial(s.url)
	if err != nil {
		return nil, err
	}
	var cf *confirmer
	if !isConsume(w) {
		if cf, err = newConfirmer(conn); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return &amqpVariant{
		publish: func(ctx context.Context, topic string, ps [][]byte) error { return cf.publish(ctx, topic, ps) },
		consume: func(ctx context.Context, topic string, chk *checker, concurrency int) error {
			ch, err := conn.Channel()
			if err != nil {
				return err
			}
			defer ch.Close()
			if err := ch.Qos(prefetchFor(concurrency), 0, false); err != nil {
				return err
			}
			return runUntil(ctx, chk, func(ctx context.Context) error {
				ds, err := ch.ConsumeWithContext(ctx, topic+"."+amqpGroup, "", false, false, false, false, nil)
				if err != nil {
					return err
				}
				var (
					wg     sync.WaitGroup
					ackErr atomic.Pointer[error]
				)
				for range concurrency {
					wg.Go(func() {
						for d := range ds {
							chk.got(d.Body)
							if err := d.Ack(false); err != nil {
								ackErr.CompareAndSwap(nil, &err)
							}
						}
					})
				}
				wg.Wait() // ds closes when ctx ends (consumer cancelled)
				if e := ackErr.Load(); e != nil {
					return *e
				}
				return nil
			})
		},
		close: func() {
			if cf != nil {
				cf.close()
			}
			_ = conn.Close()
		},
	}, nil
}

func (s *amqpSystem) wmConfig(pool int, prefetch int) wmamqp.Config {
	c := wmamqp.NewDurablePubSubConfig(s.url, func(topic string) string { return topic + "." + amqpGroup })
	c.Exchange.Type = "topic"
	c.QueueBind.GenerateRoutingKey = func(string) string { return "#" }
	c.Publish.ConfirmDelivery = true
	c.Publish.ChannelPoolSize = pool
	c.Consume.Qos.PrefetchCount = prefetch
	return c
}

func (s *amqpSystem) watermill(w workload) (*amqpVariant, error) {
	pool := 1
	if w == wPub64 || w == wLatency {
		pool = 64 // one channel per publishing goroutine
	}
	pub, err := wmamqp.NewPublisher(s.wmConfig(pool, 0), watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	return &amqpVariant{
		publish: func(_ context.Context, topic string, ps [][]byte) error { return pub.Publish(topic, wmMsgs(ps)...) },
		consume: func(ctx context.Context, topic string, chk *checker, concurrency int) error {
			sub, err := wmamqp.NewSubscriber(s.wmConfig(0, prefetchFor(concurrency)), watermill.NopLogger{})
			if err != nil {
				return err
			}
			defer sub.Close()
			return wmConsume(ctx, chk, concurrency, func(ctx context.Context) (<-chan *wmmsg.Message, error) {
				return sub.Subscribe(ctx, topic)
			})
		},
		close: func() { _ = pub.Close() },
	}, nil
}
