package inmem

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// BenchmarkPublishSubscribe measures end-to-end throughput: one goroutine
// publishes b.N 100-byte messages in batches of 100 while a subscriber
// handles them; the clock stops when the last one is handled.
func BenchmarkPublishSubscribe(b *testing.B) {
	for _, bc := range []struct {
		name        string
		concurrency int
		keys        int
	}{
		{"keyless/concurrency=1", 1, 0},
		{"keys=1000/concurrency=1", 1, 1000},
		{"keys=1000/concurrency=8", 8, 1000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			keys := make([]string, bc.keys)
			for i := range keys {
				keys[i] = fmt.Sprint("key-", i)
			}
			payload := make([]byte, 100)
			br := newBroker(b)
			defer br.Close()
			pub := newPublisher(b, br)
			sub, err := NewSubscriber(br, WithConcurrency(bc.concurrency))
			if err != nil {
				b.Fatal(err)
			}
			var handled atomic.Int64
			done := make(chan struct{})
			n := int64(b.N)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				errc <- sub.Subscribe(ctx, "bench", func(ctx context.Context, m *message.Message) error {
					if handled.Add(1) == n {
						close(done)
					}
					return nil
				})
			}()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			batch := make([]*message.Message, 0, 100)
			for i := range b.N {
				m := &message.Message{Payload: payload}
				if len(keys) > 0 {
					m.Key = keys[i%len(keys)]
				}
				batch = append(batch, m)
				if len(batch) == cap(batch) || i == b.N-1 {
					if err := pub.Publish(ctx, "bench", batch...); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			<-done
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			cancel()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkWaitSettled compares the test helpers' way of knowing a group
// is done (Broker.WaitSettled) with the plain end-to-end way (a counter in
// the handler and a channel): each op publishes 10,000 100-byte messages
// over 1,000 keys in batches of 100 and waits until a subscriber at
// concurrency 8 handled them all. Compare ns/msg of wait=settled with
// wait=counter of the same run.
func BenchmarkWaitSettled(b *testing.B) {
	const perOp = 10_000
	for _, mode := range []string{"counter", "settled"} {
		b.Run("wait="+mode, func(b *testing.B) {
			payload := make([]byte, 100)
			keys := make([]string, 1000)
			for i := range keys {
				keys[i] = fmt.Sprint("key-", i)
			}
			br := newBroker(b)
			defer br.Close()
			pub := newPublisher(b, br)
			sub, err := NewSubscriber(br, WithConcurrency(8))
			if err != nil {
				b.Fatal(err)
			}
			var handled atomic.Int64
			var target atomic.Int64
			reached := make(chan struct{}, 1)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				errc <- sub.Subscribe(ctx, "bench", func(ctx context.Context, m *message.Message) error {
					if handled.Add(1) == target.Load() && mode == "counter" {
						reached <- struct{}{}
					}
					return nil
				})
			}()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			batch := make([]*message.Message, 0, 100)
			for op := range b.N {
				target.Store(int64(op+1) * perOp)
				for i := range perOp {
					batch = append(batch, &message.Message{Key: keys[i%len(keys)], Payload: payload})
					if len(batch) == cap(batch) {
						if err := pub.Publish(ctx, "bench", batch...); err != nil {
							b.Fatal(err)
						}
						batch = batch[:0]
					}
				}
				if mode == "counter" {
					<-reached
				} else if err := br.WaitSettled(ctx, "bench", DefaultGroup); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*perOp), "ns/msg")
			cancel()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}
