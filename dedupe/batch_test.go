package dedupe_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
)

// TestBatchDedupe: in batches on inmem, a duplicate (same ID) is removed
// before the handler; a failed message is released and runs again; the
// message after it on its key, which succeeded, is completed and so not
// run again when it is redelivered with the failed one.
func TestBatchDedupe(t *testing.T) {
	b, err := inmem.NewBroker()
	require.NoError(t, err)
	defer b.Close()
	pub, err := inmem.NewPublisher(b)
	require.NoError(t, err)
	sub, err := inmem.NewSubscriber(b, inmem.WithGroup("g"), inmem.WithRedeliveryBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	store, err := dedupe.NewMemoryStore()
	require.NoError(t, err)
	defer store.Close()
	var dups []string
	var mu sync.Mutex
	mw, err := dedupe.NewBatch(store, dedupe.WithOnDuplicate(func(_ context.Context, m *message.Message, _ string) {
		mu.Lock()
		dups = append(dups, m.ID)
		mu.Unlock()
	}))
	require.NoError(t, err)

	calls := map[string]int{}
	var batches [][]string
	h := func(_ context.Context, msgs []*message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		var ids []string
		var be message.BatchError
		for i, m := range msgs {
			ids = append(ids, m.ID)
			calls[m.ID]++
			if m.ID == "fails-once" && calls[m.ID] == 1 {
				be.Fail(i, errors.New("once"))
			}
		}
		batches = append(batches, ids)
		return be.Err()
	}
	require.NoError(t, pub.Publish(context.Background(), "t",
		&message.Message{ID: "a", Key: "x"}, &message.Message{ID: "a", Key: "x"}, // a duplicate
		&message.Message{ID: "fails-once", Key: "y"}, &message.Message{ID: "after", Key: "y"},
		&message.Message{ID: "c", Key: "z"}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sub.SubscribeBatch(ctx, "t", message.ChainBatch(h, mw), message.WithBatchMaxWait(time.Millisecond))
	}()
	waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
	defer waitCancel()
	require.NoError(t, b.WaitSettled(waitCtx, "t", "g"))
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, map[string]int{"a": 1, "fails-once": 2, "after": 1, "c": 1}, calls, "batches %v", batches)
	require.ElementsMatch(t, []string{"a", "after"}, dups, "the duplicate of a, and after on its redelivery")
}
