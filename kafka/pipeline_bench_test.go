package kafka

import (
	"context"
	"strconv"
	"sync"
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
			sub := &subscription{topic: "bench-topic-with-a-longish-name", group: "g", parts: map[int32]*partState{}}
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
