package inmem

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// BenchmarkPublishSubscribeBatch is BenchmarkPublishSubscribe with a batch
// handler (SubscribeBatch, default limits: 256 messages, 10ms): one
// goroutine publishes b.N 100-byte messages in batches of 100 while the
// subscriber handles them in batches; the clock stops when the last one is
// handled.
func BenchmarkPublishSubscribeBatch(b *testing.B) {
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
				errc <- sub.SubscribeBatch(ctx, "bench", func(ctx context.Context, ms []*message.Message) error {
					if handled.Add(int64(len(ms))) == n {
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
