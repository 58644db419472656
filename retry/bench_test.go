package retry_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/ferrymsg/ferry/dedupe"
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
