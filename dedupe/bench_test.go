package dedupe_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// benchIDs is a ring of distinct IDs, longer than the store's bound, so
// every message is new to the store (an ID comes round again only after
// it was evicted) and the store runs at capacity, evicting on each claim.
var benchIDs = func() []string {
	ids := make([]string, 1<<20)
	for i := range ids {
		ids[i] = "0190b4c2-7f00-7000-8000-" + strconv.Itoa(1e11+i)
	}
	return ids
}()

func runBench(b *testing.B, h message.Handler) {
	ctx := context.Background()
	msg := &message.Message{Delivery: message.Delivery{Topic: "orders", Attempt: 1, Partition: 0}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		msg.ID = benchIDs[i&(len(benchIDs)-1)]
		msg.Delivery.Offset = int64(i)
		if err := h(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMiddlewareMemory measures the per-message cost of the dedupe
// middleware over the memory store on the success path (claim, handler,
// complete, with lease renewal armed), alone and together with the retry
// middleware, against the bare handler in the same run.
//
//	go test -run '^$' -bench 'MiddlewareMemory' -benchmem -count 5 ./dedupe/
func BenchmarkMiddlewareMemory(b *testing.B) {
	nop := func(context.Context, *message.Message) error { return nil }
	newDedupe := func(b *testing.B, opts ...dedupe.Option) message.Middleware {
		store, err := dedupe.NewMemoryStore()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = store.Close() })
		dd, err := dedupe.New(store, opts...)
		if err != nil {
			b.Fatal(err)
		}
		return dd
	}
	rt, err := retry.New()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline", func(b *testing.B) { runBench(b, nop) })
	b.Run("dedupe", func(b *testing.B) { runBench(b, message.Chain(nop, newDedupe(b))) })
	b.Run("dedupe-no-renewal", func(b *testing.B) {
		runBench(b, message.Chain(nop, newDedupe(b, dedupe.WithLeaseRenewal(0))))
	})
	b.Run("dedupe+retry", func(b *testing.B) { runBench(b, message.Chain(nop, rt, newDedupe(b))) })
}

// BenchmarkMiddlewareMemoryParallel is the same success path from
// GOMAXPROCS goroutines sharing one store (one mutex).
//
//	go test -run '^$' -bench 'MiddlewareMemoryParallel' -benchmem ./dedupe/
func BenchmarkMiddlewareMemoryParallel(b *testing.B) {
	store, err := dedupe.NewMemoryStore()
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	dd, err := dedupe.New(store)
	if err != nil {
		b.Fatal(err)
	}
	h := dd(func(context.Context, *message.Message) error { return nil })
	var next atomicCounter
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		msg := &message.Message{}
		for pb.Next() {
			msg.ID = benchIDs[next.add()&(len(benchIDs)-1)]
			if err := h(ctx, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
