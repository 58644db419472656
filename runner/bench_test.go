package runner_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/runner"
)

// BenchmarkRunnerInmem consumes b.N messages on inmem with one subscriber
// (concurrency 1), run by a Runner or by its own Subscribe (the
// baseline): the difference is the runner's per-message cost (the handler
// context that the drain deadline can cancel).
func BenchmarkRunnerInmem(b *testing.B) {
	for _, name := range []string{"baseline Subscribe", "runner"} {
		b.Run(name, func(b *testing.B) {
			br, err := inmem.NewBroker(inmem.WithPartitions(4))
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			pub, _ := inmem.NewPublisher(br)
			batch := make([]*message.Message, 0, 1000)
			for i := 0; i < b.N; i += len(batch) {
				batch = batch[:0]
				for j := 0; j < 1000 && i+j < b.N; j++ {
					batch = append(batch, &message.Message{Key: strconv.Itoa(j % 16), Payload: []byte("x")})
				}
				if err := pub.Publish(context.Background(), "bench", batch...); err != nil {
					b.Fatal(err)
				}
			}
			sub, err := inmem.NewSubscriber(br, inmem.WithGroup("g"))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 0
			done := make(chan struct{})
			h := func(context.Context, *message.Message) error {
				if n++; n == b.N {
					close(done)
				}
				return nil
			}
			errc := make(chan error, 1)
			b.ReportAllocs()
			b.ResetTimer()
			if name == "runner" {
				r, err := runner.New(runner.WithLogger(quiet), runner.WithSignals(), runner.WithDrainTimeout(time.Minute))
				if err != nil {
					b.Fatal(err)
				}
				_ = r.Add("bench", sub, "bench", h)
				go func() { errc <- r.Run(ctx) }()
			} else {
				go func() { errc <- sub.Subscribe(ctx, "bench", h) }()
			}
			<-done
			b.StopTimer()
			cancel()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			_ = sub.Close()
		})
	}
}
