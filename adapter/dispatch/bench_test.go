package dispatch

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/message"
)

// BenchmarkDispatch measures the hand-off cost per delivery: batches are
// submitted the way an adapter submits a fetch, a no-op handler runs, and
// the settle callback counts. keys=0 means keyless deliveries, keys=N
// cycles through N keys.
func BenchmarkDispatch(b *testing.B) {
	for _, bc := range []struct {
		name        string
		concurrency int
		keys        int
	}{
		{"c1/keyless", 1, 0},
		{"c1/keys=1M", 1, 1 << 20},
		{"c1/keys=8", 1, 8},
		{"c16/keyless", 16, 0},
		{"c16/keys=1M", 16, 1 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const batch = 512
			keys := make([]string, max(bc.keys, 1))
			if bc.keys > 0 {
				for i := range keys {
					keys[i] = "k" + strconv.Itoa(i)
				}
			}
			var wg sync.WaitGroup
			wg.Add(b.N)
			d := New(context.Background(), func(context.Context, *message.Message) error { return nil },
				Config{Concurrency: bc.concurrency}, func(*Delivery) { wg.Done() })
			defer d.Shutdown()
			b.ReportAllocs()
			b.ResetTimer()
			ptrs := make([]*Delivery, 0, batch)
			for i := 0; i < b.N; i += batch {
				n := min(batch, b.N-i)
				dls := make([]Delivery, n)
				msgs := make([]message.Message, n)
				ptrs = ptrs[:0]
				for j := range dls {
					msgs[j].Key = keys[(i+j)%len(keys)]
					dls[j].Msg = &msgs[j]
					ptrs = append(ptrs, &dls[j])
				}
				if _, err := d.SubmitBatch(context.Background(), ptrs); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
		})
	}
}
