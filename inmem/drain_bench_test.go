package inmem

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
)

// BenchmarkDrain measures the consume side alone, as ferrybench's consume
// cells do: a backlog of drainN keyless 100-byte messages is published
// once (kept by retention), and each op drains all of it in a group of
// its own, with Subscribe or SubscribeBatch at concurrency 1 or 16. The
// clock runs from the subscribe to the last message handled; msgs/s is
// over all ops, cpu-ns/msg the process's CPU time (user + system) over
// the drains per message, which depends less on a busy machine. Most of
// a CPU profile of it (-cpuprofile) is the drain.
func BenchmarkDrain(b *testing.B) {
	const drainN = 500_000
	br := newBroker(b, WithRetention(drainN, 0))
	defer br.Close()
	pub := newPublisher(b, br)
	payload := make([]byte, 100)
	batch := make([]*message.Message, 1000)
	for i := 0; i < drainN; i += len(batch) {
		for j := range batch {
			batch[j] = &message.Message{Payload: payload}
		}
		if err := pub.Publish(context.Background(), "drain", batch...); err != nil {
			b.Fatal(err)
		}
	}
	groups := 0
	for _, conc := range []int{1, 16} {
		for _, kind := range []string{"single", "batch"} {
			b.Run(fmt.Sprintf("c%d/%s", conc, kind), func(b *testing.B) {
				b.ReportAllocs()
				var total, cpu time.Duration
				for range b.N {
					groups++
					sub, err := NewSubscriber(br, WithGroup(fmt.Sprint("g", groups)), WithConcurrency(conc))
					if err != nil {
						b.Fatal(err)
					}
					var handled atomic.Int64
					done := make(chan struct{})
					count := func(n int) {
						if handled.Add(int64(n)) == drainN {
							close(done)
						}
					}
					ctx, cancel := context.WithCancel(context.Background())
					errc := make(chan error, 1)
					start, cpu0 := time.Now(), processCPU()
					go func() {
						if kind == "batch" {
							errc <- sub.SubscribeBatch(ctx, "drain", func(_ context.Context, ms []*message.Message) error {
								count(len(ms))
								return nil
							})
							return
						}
						errc <- sub.Subscribe(ctx, "drain", func(context.Context, *message.Message) error {
							count(1)
							return nil
						})
					}()
					<-done
					total += time.Since(start)
					cpu += processCPU() - cpu0
					cancel()
					if err := <-errc; err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)*drainN/total.Seconds(), "msgs/s")
				b.ReportMetric(cpu.Seconds()*1e9/float64(b.N)/drainN, "cpu-ns/msg")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// processCPU is the process's user + system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
