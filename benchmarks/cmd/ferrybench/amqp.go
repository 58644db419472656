package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
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
// prefetch set to ferry's). Every topic is a durable topic exchange. Raw
// amqp091, Watermill and ferry-competing (amqp.WithCompetingConsumers) use
// one durable classic queue "<topic>.q" bound with "#". ferry uses its
// default topology, a sharded group declared by amqp.Publisher.Declare: the
// headers exchange "<topic>.q" bound to the topic exchange with "#", the
// shard queues "<topic>.q.0" ... "<topic>.q.15" behind it (one binding per
// shard on the ferry-shard-<bucket> headers) and the alternate exchange
// "<topic>.q.unsharded".
type amqpSystem struct {
	url  string
	mu   sync.Mutex
	conn *amqp091.Connection // declarations, checks, backlogs; see connection
	run  int64
	seq  atomic.Int64
}

// amqpPubChannels is a diagnostic: ferry's publisher with
// amqp.WithPublishChannels(n) instead of its default.
var amqpPubChannels = flag.Int("amqp-publish-channels", 0, "diagnostic: ferry's AMQP publisher with WithPublishChannels(n) (0: its default)")

func newAMQPSystem(url string) (*amqpSystem, error) {
	conn, err := amqp091.Dial(url)
	if err != nil {
		return nil, fmt.Errorf("RabbitMQ at %s unreachable (run scripts/services.sh up): %w", url, err)
	}
	return &amqpSystem{url: url, conn: conn, run: time.Now().Unix()}, nil
}

func (*amqpSystem) name() string { return "amqp" }
func (*amqpSystem) variants() []string {
	return []string{"ferry", vFerryCompeting, vFerryBatch, "raw", "watermill"}
}
func (s *amqpSystem) close()        { _ = s.connection().Close() }
func (*amqpSystem) service() string { return "rabbitmq" }

// connection returns the system's own connection, dialled again if the
// broker closed it (a test suite restarted the shared broker between
// cells).
func (s *amqpSystem) connection() *amqp091.Connection {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn.IsClosed() {
		if c, err := amqp091.Dial(s.url); err == nil {
			s.conn = c
		}
	}
	return s.conn
}

// vFerryCompeting is ferry with amqp.WithCompetingConsumers: the group is
// one queue that every member consumes (the only topology before sharded
// groups).
const vFerryCompeting = "ferry-competing"

const amqpGroup = "q"

// plainQueue is the one queue of the raw, Watermill and ferry-competing
// cells.
func plainQueue(topic string) string { return topic + "." + amqpGroup }

// shardQueues are the queues of ferry's default (sharded) group on topic.
func shardQueues(topic string) []string {
	qs := make([]string, amqp.DefaultShards)
	for i := range qs {
		qs[i] = fmt.Sprintf("%s.%s.%d", topic, amqpGroup, i)
	}
	return qs
}

// withChannel runs f on a channel of its own: a failed passive declare or
// delete closes the channel it ran on, and must not take the others along.
func (s *amqpSystem) withChannel(f func(ch *amqp091.Channel) error) error {
	ch, err := s.connection().Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return f(ch)
}

// declarePlain declares the topology of the raw and Watermill cells.
func (s *amqpSystem) declarePlain(_ context.Context, topic string) error {
	return s.withChannel(func(ch *amqp091.Channel) error {
		q := plainQueue(topic)
		if err := ch.ExchangeDeclare(topic, "topic", true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			return err
		}
		return ch.QueueBind(q, "#", topic, false, nil)
	})
}

// remove deletes whatever a cell of any variant declared on topic.
func (s *amqpSystem) remove(topic string) {
	base := plainQueue(topic)
	for _, q := range append([]string{base}, shardQueues(topic)...) {
		_ = s.withChannel(func(ch *amqp091.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
	}
	for _, x := range []string{base, base + ".unsharded", base + ".members", topic} {
		_ = s.withChannel(func(ch *amqp091.Channel) error { return ch.ExchangeDelete(x, false, false) })
	}
}

// depths returns the message count of each queue.
func (s *amqpSystem) depths(qs []string) ([]int, error) {
	out := make([]int, len(qs))
	for i, q := range qs {
		err := s.withChannel(func(ch *amqp091.Channel) error {
			st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			out[i] = st.Messages
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
	}
	return out, nil
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

// depth returns the total message count of qs.
func (s *amqpSystem) depth(qs []string) (int, error) {
	d, err := s.depths(qs)
	return sum(d), err
}

func queuesStr(qs []string) string {
	if len(qs) == 1 {
		return "queue " + qs[0]
	}
	return fmt.Sprintf("the %d queues %s ... %s", len(qs), qs[0], qs[len(qs)-1])
}

// confirmer is a confirm-mode channel with a return listener: raw
// amqp091's publish with the same guarantee as ferry's (confirmed, routed).
// With shard set, every message carries the ferry-shard header, as ferry's
// publisher sets it, so that a sharded group's router spreads the messages
// over its shards (backlogs of consume cells).
type confirmer struct {
	ch       *amqp091.Channel
	shard    bool
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
		switch {
		case cfg.rawProps:
			// diagnostic: the properties ferry sets (message id, timestamp,
			// a header table with ferry-time and ferry-shard)
			now := time.Now()
			pub.MessageId = fakeID
			pub.Timestamp = now
			pub.Headers = amqp091.Table{amqp.TimeHeader: now.UnixMilli(), bucketOf(p): "1"}
		case c.shard:
			pub.Headers = amqp091.Table{bucketOf(p): "1"}
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

// bucketOf is the ferry-shard header of a benchmark message: its bucket is
// its sequence number modulo amqp.ShardBuckets (as even a spread as
// ferry's hash of random message IDs).
func bucketOf(p []byte) string {
	return amqp.ShardHeader(int(binary.BigEndian.Uint64(p[0:8]) % amqp.ShardBuckets))
}

// fakeID has the length of a ferry message ID (a UUIDv7 string).
const fakeID = "01900000-0000-7000-8000-000000000000"

func (c *confirmer) close() { _ = c.ch.Close(); <-c.done }

type amqpVariant struct {
	publish func(ctx context.Context, topic string, ps [][]byte) error
	consume func(ctx context.Context, topic string, chk *checker, concurrency int) error
	// declare declares the topology the variant consumes (and its
	// publishes are counted in): topic's exchange and the group's queues.
	declare func(ctx context.Context, topic string) error
	// queues are the queues of that topology, holding what was published
	// to topic.
	queues func(topic string) []string
	close  func()
}

func prefetchFor(concurrency int) int { return max(amqp.DefaultMinPrefetch, 16*concurrency) }

func (s *amqpSystem) cell(w workload, size int, v string, n int) (*cell, error) {
	var av *amqpVariant
	var err error
	switch v {
	case "ferry":
		av, err = s.ferry()
	case vFerryCompeting:
		av, err = s.ferry(amqp.WithCompetingConsumers())
	case vFerryBatch:
		av, err = s.ferryBatch()
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
	queues := av.queues(topic)
	c := &cell{n: n, close: func() { av.close(); s.remove(topic) }}
	ps := getPayloads(n, size).data
	one := func(ctx context.Context, p []byte) error { return av.publish(ctx, topic, [][]byte{p}) }
	pubSetup := func(ctx context.Context) error {
		if err := av.declare(ctx, topic); err != nil {
			return err
		}
		return one(ctx, warmPayload(size))
	}
	pubVerify := func(ctx context.Context) error {
		got, err := s.depth(queues)
		if err != nil {
			return err
		}
		if got != n+1 {
			return fmt.Errorf("%s hold %d messages, want %d (n + 1 warm-up)", queuesStr(queues), got, n+1)
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
			if err := av.declare(ctx, topic); err != nil {
				return err
			}
			// The backlog goes through the topic exchange, each message
			// with the ferry-shard header (every variant the same
			// messages; a sharded group's router spreads them).
			cf, err := newConfirmer(s.connection())
			if err != nil {
				return err
			}
			cf.shard = true
			defer cf.close()
			if err := batches(n, 5000, func(lo, hi int) error { return cf.publish(ctx, topic, ps[lo:hi]) }); err != nil {
				return fmt.Errorf("fill backlog: %w", err)
			}
			ds, err := s.depths(queues)
			if err != nil {
				return fmt.Errorf("backlog: %w", err)
			}
			if d := sum(ds); d != n {
				return fmt.Errorf("backlog: %s hold %d messages, want %d", queuesStr(queues), d, n)
			}
			if len(ds) > 1 && n >= 100*len(ds) {
				for i, d := range ds {
					if d < n/len(ds)/2 {
						return fmt.Errorf("backlog: shard queue %s holds %d of %d messages: not spread over the shards (%v)", queues[i], d, n, ds)
					}
				}
			}
			return nil
		}
		c.chk = newChecker(n, size)
		c.run = func(ctx context.Context) error { return av.consume(ctx, topic, c.chk, conc(w)) }
		c.verify = func(ctx context.Context) error {
			// every ack reached the broker: the queues are empty
			deadline := time.Now().Add(10 * time.Second)
			for {
				d, err := s.depth(queues)
				if err != nil {
					return err
				}
				if d == 0 {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s still hold %d messages after consuming", queuesStr(queues), d)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	case wLatency:
		c.chk = newLatencyChecker(n, size)
		latencyCell(c, size, func(ctx context.Context, chk *checker) error { return av.consume(ctx, topic, chk, 1) }, one)
		setup := c.setup
		c.setup = func(ctx context.Context) error {
			if err := av.declare(ctx, topic); err != nil {
				return err
			}
			return setup(ctx)
		}
	}
	return c, nil
}

// ferry is ferry's publisher and subscriber with topology options opts
// (none: the default sharded group; WithCompetingConsumers: one queue),
// the topology declared by Publisher.Declare as a deployment would.
func (s *amqpSystem) ferry(opts ...amqp.Option) (*amqpVariant, error) {
	topology := amqp.WithOptions(opts...) // the same for Declare and the subscribers
	popts := []amqp.PublisherOption{topology}
	if *amqpPubChannels > 0 {
		popts = append(popts, amqp.WithPublishChannels(*amqpPubChannels))
	}
	pub, err := amqp.NewPublisher(s.url, popts...)
	if err != nil {
		return nil, err
	}
	queues := shardQueues
	if len(opts) > 0 {
		queues = func(topic string) []string { return []string{plainQueue(topic)} }
	}
	return &amqpVariant{
		publish: func(ctx context.Context, topic string, ps [][]byte) error {
			return pub.Publish(ctx, topic, ferryMsgs(ps)...)
		},
		consume: func(ctx context.Context, topic string, chk *checker, concurrency int) error {
			sub, err := amqp.NewSubscriber(s.url, amqp.WithGroup(amqpGroup), amqp.WithConcurrency(concurrency), topology)
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
		declare: func(ctx context.Context, topic string) error { return pub.Declare(ctx, topic, amqpGroup) },
		queues:  queues,
		close:   func() { _ = pub.Close() },
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
		declare: s.declarePlain,
		queues:  func(topic string) []string { return []string{plainQueue(topic)} },
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
				ds, err := ch.ConsumeWithContext(ctx, plainQueue(topic), "", false, false, false, false, nil)
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
	c := wmamqp.NewDurablePubSubConfig(s.url, plainQueue)
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
		declare: s.declarePlain,
		queues:  func(topic string) []string { return []string{plainQueue(topic)} },
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
