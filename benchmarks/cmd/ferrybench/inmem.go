package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	wmmsg "github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
)

// inmemSystem: ferry's inmem adapter, a buffered Go channel of payloads
// (the floor: no message type, no groups, no offsets) and Watermill's
// GoChannel.
type inmemSystem struct{}

func newInmemSystem() *inmemSystem          { return &inmemSystem{} }
func (*inmemSystem) name() string           { return "inmem" }
func (*inmemSystem) service() string        { return "" }
func (*inmemSystem) variants() []string     { return []string{"ferry", vFerryBatch, "raw", "watermill"} }
func (*inmemSystem) close()                 {}
func conc(w workload) int                   { return map[workload]int{wCons1: 1, wCons16: 16}[w] }
func isConsume(w workload) bool             { return w == wCons1 || w == wCons16 }
func errUnknown(w workload, v string) error { return fmt.Errorf("no cell %s/%s", w, v) }
func ferryMsgs(ps [][]byte) []*message.Message {
	ms := make([]*message.Message, len(ps))
	for i, p := range ps {
		ms[i] = &message.Message{Payload: p}
	}
	return ms
}

const topicName = "bench"

// runUntil runs sub in a goroutine, waits for chk, cancels sub and waits for
// it to return.
func runUntil(ctx context.Context, chk *checker, sub func(ctx context.Context) error) error {
	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- sub(sctx) }()
	werr := chk.wait(ctx)
	cancel()
	serr := <-errc
	if werr != nil {
		return werr
	}
	if serr != nil && !errors.Is(serr, context.Canceled) {
		return fmt.Errorf("subscribe: %w", serr)
	}
	return nil
}

func (s *inmemSystem) cell(w workload, size int, v string, n int) (*cell, error) {
	switch v {
	case "ferry":
		return s.ferry(w, size, n)
	case vFerryBatch:
		return s.ferryBatch(w, size, n)
	case "raw":
		return s.raw(w, size, n), nil
	case "watermill":
		return s.watermill(w, size, n), nil
	}
	return nil, errUnknown(w, v)
}

func (s *inmemSystem) ferry(w workload, size, n int) (*cell, error) {
	b, err := inmem.NewBroker()
	if err != nil {
		return nil, err
	}
	pub, err := inmem.NewPublisher(b)
	if err != nil {
		return nil, err
	}
	c := &cell{n: n, close: func() { _ = pub.Close(); _ = b.Close() }}
	ps := getPayloads(n, size).data
	consume := func(ctx context.Context, chk *checker, group string, concurrency int) error {
		sub, err := inmem.NewSubscriber(b, inmem.WithGroup(group), inmem.WithConcurrency(concurrency))
		if err != nil {
			return err
		}
		defer sub.Close()
		return runUntil(ctx, chk, func(ctx context.Context) error {
			return sub.Subscribe(ctx, topicName, func(_ context.Context, m *message.Message) error {
				chk.got(m.Payload)
				return nil
			})
		})
	}
	readBack := func(ctx context.Context) error { return consume(ctx, newChecker(n, size), "verify", 1) }
	switch w {
	case wPubBatch:
		c.run = func(ctx context.Context) error {
			return batches(n, cfg.batch, func(lo, hi int) error { return pub.Publish(ctx, topicName, ferryMsgs(ps[lo:hi])...) })
		}
		c.verify = readBack
	case wPub64:
		c.run = func(ctx context.Context) error {
			return parallel(ctx, n, 64, func(ctx context.Context, i int) error {
				return pub.Publish(ctx, topicName, &message.Message{Payload: ps[i]})
			})
		}
		c.verify = readBack
	case wCons1, wCons16:
		c.setup = func(ctx context.Context) error {
			return batches(n, cfg.batch, func(lo, hi int) error { return pub.Publish(ctx, topicName, ferryMsgs(ps[lo:hi])...) })
		}
		c.chk = newChecker(n, size)
		c.run = func(ctx context.Context) error { return consume(ctx, c.chk, "bench", conc(w)) }
	case wLatency:
		c.chk = newLatencyChecker(n, size)
		latencyCell(c, size, func(ctx context.Context, chk *checker) error { return consume(ctx, chk, "bench", 1) },
			func(ctx context.Context, p []byte) error {
				return pub.Publish(ctx, topicName, &message.Message{Payload: p})
			})
	}
	return c, nil
}

// latencyCell wires a latency cell: setup starts the consumer and waits for
// a warm-up message; run sends n messages at the offered rate from 64
// goroutines and waits until all arrived.
func latencyCell(c *cell, size int, consume func(ctx context.Context, chk *checker) error, send func(ctx context.Context, p []byte) error) {
	var (
		cancel context.CancelFunc
		errc   = make(chan error, 1)
	)
	prevClose := c.close
	c.setup = func(ctx context.Context) error {
		var sctx context.Context
		sctx, cancel = context.WithCancel(context.Background())
		go func() { errc <- consume(sctx, c.chk) }()
		return c.chk.waitWarm(ctx, send)
	}
	c.run = func(ctx context.Context) error {
		if err := schedule(ctx, c.n, size, latRate, 64, send); err != nil {
			return err
		}
		return c.chk.wait(ctx)
	}
	c.close = func() {
		if cancel != nil {
			cancel()
			<-errc
		}
		if prevClose != nil {
			prevClose()
		}
	}
}

// latRate is the offered rate of the latency cell being built (set by
// runCell's caller through cellRate).
var latRate float64

func (s *inmemSystem) raw(w workload, size, n int) *cell {
	ps := getPayloads(n, size).data
	c := &cell{n: n}
	var ch chan []byte
	drain := func(ctx context.Context) error {
		chk := newChecker(n, size)
		close(ch)
		for p := range ch {
			chk.got(p)
		}
		return chk.verify()
	}
	switch w {
	case wPubBatch:
		c.setup = func(context.Context) error { ch = make(chan []byte, n); return nil }
		c.run = func(ctx context.Context) error {
			return batches(n, cfg.batch, func(lo, hi int) error {
				for _, p := range ps[lo:hi] {
					ch <- p
				}
				return nil
			})
		}
		c.verify = drain
	case wPub64:
		c.setup = func(context.Context) error { ch = make(chan []byte, n); return nil }
		c.run = func(ctx context.Context) error {
			return parallel(ctx, n, 64, func(ctx context.Context, i int) error { ch <- ps[i]; return nil })
		}
		c.verify = drain
	case wCons1, wCons16:
		c.setup = func(context.Context) error {
			ch = make(chan []byte, n)
			for _, p := range ps {
				ch <- p
			}
			close(ch)
			return nil
		}
		c.chk = newChecker(n, size)
		c.run = func(ctx context.Context) error {
			var wg sync.WaitGroup
			for range conc(w) {
				wg.Go(func() {
					for p := range ch {
						c.chk.got(p)
					}
				})
			}
			wg.Wait()
			return c.chk.verify()
		}
	case wLatency:
		c.chk = newLatencyChecker(n, size)
		ch = make(chan []byte, 4096)
		latencyCell(c, size, func(ctx context.Context, chk *checker) error {
			for {
				select {
				case p := <-ch:
					chk.got(p)
				case <-ctx.Done():
					return nil
				}
			}
		}, func(ctx context.Context, p []byte) error {
			select {
			case ch <- p:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}
	return c
}

func wmMsgs(ps [][]byte) []*wmmsg.Message {
	ms := make([]*wmmsg.Message, len(ps))
	for i, p := range ps {
		ms[i] = wmmsg.NewMessage(watermill.NewUUID(), p)
	}
	return ms
}

// wmConsume reads a Watermill subscription with `workers` goroutines,
// acking each message, until chk is complete.
func wmConsume(ctx context.Context, chk *checker, workers int, subscribe func(ctx context.Context) (<-chan *wmmsg.Message, error)) error {
	return runUntil(ctx, chk, func(ctx context.Context) error {
		msgs, err := subscribe(ctx)
		if err != nil {
			return err
		}
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for m := range msgs {
					chk.got(m.Payload)
					m.Ack()
				}
			})
		}
		<-ctx.Done()
		wg.Wait()
		return nil
	})
}

func (s *inmemSystem) watermill(w workload, size, n int) *cell {
	ps := getPayloads(n, size).data
	persistent := w != wLatency
	gc := gochannel.NewGoChannel(gochannel.Config{Persistent: persistent}, watermill.NopLogger{})
	c := &cell{n: n, close: func() { _ = gc.Close() }}
	sub := func(ctx context.Context) (<-chan *wmmsg.Message, error) { return gc.Subscribe(ctx, topicName) }
	readBack := func(ctx context.Context) error { return wmConsume(ctx, newChecker(n, size), 1, sub) }
	switch w {
	case wPubBatch:
		c.run = func(ctx context.Context) error {
			return batches(n, cfg.batch, func(lo, hi int) error { return gc.Publish(topicName, wmMsgs(ps[lo:hi])...) })
		}
		c.verify = readBack
	case wPub64:
		c.run = func(ctx context.Context) error {
			return parallel(ctx, n, 64, func(ctx context.Context, i int) error {
				return gc.Publish(topicName, wmmsg.NewMessage(watermill.NewUUID(), ps[i]))
			})
		}
		c.verify = readBack
	case wCons1, wCons16:
		c.setup = func(ctx context.Context) error {
			return batches(n, cfg.batch, func(lo, hi int) error { return gc.Publish(topicName, wmMsgs(ps[lo:hi])...) })
		}
		c.chk = newChecker(n, size)
		c.run = func(ctx context.Context) error { return wmConsume(ctx, c.chk, conc(w), sub) }
	case wLatency:
		c.chk = newLatencyChecker(n, size)
		latencyCell(c, size, func(ctx context.Context, chk *checker) error { return wmConsume(ctx, chk, 1, sub) },
			func(ctx context.Context, p []byte) error {
				return gc.Publish(topicName, wmmsg.NewMessage(watermill.NewUUID(), p))
			})
	}
	return c
}
