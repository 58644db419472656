package kafka

import (
	"context"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/adapter/dispatch"
	"github.com/ferrymsg/ferry/message"
)

// BenchmarkConsumePipeline measures ferry's own work per consumed record,
// without a broker: building the messages of a fetch, the hand-off to the
// dispatcher, a no-op handler and settlement in the partition tracker.
func BenchmarkConsumePipeline(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run("c"+strconv.Itoa(conc), func(b *testing.B) {
			const fetch = 500
			payload := make([]byte, 100)
			recs := make([]*kgo.Record, fetch)
			var wg sync.WaitGroup
			sub := &subscription{topic: "bench-topic-with-a-longish-name", group: "g", cfg: &config{}, parts: map[int32]*partState{}}
			sub.d = dispatch.New(context.Background(), func(context.Context, *message.Message) error { return nil },
				dispatch.Config{Concurrency: conc}, func(dl *dispatch.Delivery) { sub.settled(dl); wg.Done() })
			defer sub.d.Shutdown()
			sub.parts[0] = newPartState(sub.topic, 0, sub.d.NewScope())
			b.ReportAllocs()
			b.ResetTimer()
			off := int64(0)
			ts := time.Now()
			for i := 0; i < b.N; i += fetch {
				n := min(fetch, b.N-i)
				for j := range n {
					recs[j] = &kgo.Record{Topic: sub.topic, Value: payload, Offset: off, Timestamp: ts}
					off++
				}
				wg.Add(n)
				if !sub.submitPartition(context.Background(), kgo.FetchTopicPartition{Topic: sub.topic, FetchPartition: kgo.FetchPartition{Partition: 0, Records: recs[:n]}}) {
					b.Fatal("submit stopped")
				}
			}
			wg.Wait()
		})
	}
}

// BenchmarkConsumePipelineBatch is BenchmarkConsumePipeline with a batch
// handler (SubscribeBatch's path, default limits) and fetches of 2,000
// records, as franz-go hands over at 100 B. The records are reused from
// fetch to fetch (as franz-go's pool does), so B/op and allocs/op are
// ferry's; cpu-ns/op is the process's CPU time (user+system) per record.
func BenchmarkConsumePipelineBatch(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run("c"+strconv.Itoa(conc), func(b *testing.B) {
			const fetch = 2000
			payload := make([]byte, 100)
			ts := time.Now()
			recs := make([]*kgo.Record, fetch)
			for j := range recs {
				recs[j] = &kgo.Record{Topic: "bench-topic-with-a-longish-name", Value: payload, Timestamp: ts}
			}
			var wg sync.WaitGroup
			sub := &subscription{topic: "bench-topic-with-a-longish-name", group: "g", cfg: &config{}, parts: map[int32]*partState{}}
			lim, err := message.NewBatchConfig()
			if err != nil {
				b.Fatal(err)
			}
			bat := sub.batchSettle(&dispatch.Batch{Handler: func(context.Context, []*message.Message) error { return nil }, Limits: lim})
			settle := bat.Settled
			bat.Settled = func(dls []*dispatch.Delivery) { settle(dls); wg.Add(-len(dls)) }
			sub.d = dispatch.New(context.Background(), nil, dispatch.Config{Concurrency: conc, Batch: bat}, sub.settled)
			defer sub.d.Shutdown()
			sub.parts[0] = newPartState(sub.topic, 0, sub.d.NewScope())
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			off := int64(0)
			for i := 0; i < b.N; i += fetch {
				n := min(fetch, b.N-i)
				for _, r := range recs[:n] {
					r.Offset = off
					off++
				}
				wg.Add(n)
				if !sub.submitPartition(context.Background(), kgo.FetchTopicPartition{Topic: sub.topic, FetchPartition: kgo.FetchPartition{Partition: 0, Records: recs[:n]}}) {
					b.Fatal("submit stopped")
				}
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
