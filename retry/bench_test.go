package retry_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

func nop(context.Context, *message.Message) error { return nil }

func benchHandler(b *testing.B, h message.Handler, uniqueIDs bool) {
	b.Helper()
	ctx := context.Background()
	msg := delivered("orders", 1)
	var ids []string
	if uniqueIDs {
		ids = make([]string, b.N)
		for i := range ids {
			ids[i] = "id-" + strconv.Itoa(i)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if uniqueIDs {
			msg.ID = ids[i]
		}
		if err := h(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRetrySuccessPath measures the retry middleware on a handler that
// succeeds, against the bare handler in the same run.
//
//	go test -run '^$' -bench 'RetrySuccessPath' -benchmem ./retry/
func BenchmarkRetrySuccessPath(b *testing.B) {
	mw, err := retry.New(retry.WithDeadLetter(&fakePublisher{}), retry.SpringHeaders())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline", func(b *testing.B) { benchHandler(b, nop, false) })
	b.Run("retry", func(b *testing.B) { benchHandler(b, mw(nop), false) })
	newDedupe := func(b *testing.B) message.Middleware {
		store, err := dedupe.NewMemoryStore(dedupe.WithMaxKeys(1 << 20))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { store.Close() })
		dd, err := dedupe.New(store)
		if err != nil {
			b.Fatal(err)
		}
		return dd
	}
	// Unique IDs: every message is new to the store, as in production.
	b.Run("dedupe-memory", func(b *testing.B) { benchHandler(b, newDedupe(b)(nop), true) })
	b.Run("retry+dedupe-memory", func(b *testing.B) { benchHandler(b, message.Chain(nop, mw, newDedupe(b)), true) })
}

// BenchmarkOtherKeysAtConcurrency1 measures, on inmem at concurrency 1,
// the throughput of 50 healthy keys, alone and beside one key whose message
// fails on every attempt (retried every 10 ms for the whole run, never
// exhausted). The middleware lets the dispatcher wait between attempts, so
// the failing key costs the others one failed handler call per 10 ms; a
// middleware that sleeps in the handler would stop them for as long as
// the key fails. Report the ratio one-failing-key / healthy.
//
//	go test -run '^$' -bench OtherKeysAtConcurrency1 -benchtime 200000x -count 3 ./retry/
func BenchmarkOtherKeysAtConcurrency1(b *testing.B) {
	for _, failing := range []bool{false, true} {
		name := "healthy"
		if failing {
			name = "one-failing-key"
		}
		b.Run(name, func(b *testing.B) {
			broker, err := inmem.NewBroker()
			if err != nil {
				b.Fatal(err)
			}
			defer broker.Close()
			pub, err := inmem.NewPublisher(broker)
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			sub, err := inmem.NewSubscriber(broker, inmem.WithGroup("bench"), inmem.WithConcurrency(1))
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			mw, err := retry.New(retry.WithMaxAttempts(0), retry.WithMaxElapsedTime(time.Hour), retry.WithConstantBackoff(10*time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var msgs []*message.Message
			if failing {
				msgs = append(msgs, &message.Message{Key: "bad", Payload: []byte("x")})
			}
			for i := range b.N {
				msgs = append(msgs, &message.Message{Key: "k" + strconv.Itoa(i%50), Payload: []byte("x")})
			}
			for len(msgs) > 0 {
				n := min(len(msgs), 4096)
				if err := pub.Publish(ctx, "bench", msgs[:n]...); err != nil {
					b.Fatal(err)
				}
				msgs = msgs[n:]
			}
			var handled atomic.Int64
			done := make(chan struct{})
			h := func(_ context.Context, m *message.Message) error {
				if m.Key == "bad" {
					return errBoom
				}
				if handled.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}
			sctx, cancel := context.WithCancel(ctx)
			stopped := make(chan error, 1)
			b.ResetTimer()
			go func() { stopped <- sub.Subscribe(sctx, "bench", message.Chain(h, mw)) }()
			<-done
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			cancel()
			if err := <-stopped; err != nil {
				b.Fatal(err)
			}
		})
	}
}
