package retry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// TestBatchRetriesOnlyFailedAndDeadLettersEach: in batches on inmem, a
// message failing always is dead-lettered with its own error after 3
// attempts, one failing once is retried and settles, and messages of other
// keys are handled once: the retries carry only the failed messages and
// the later ones of their key.
func TestBatchRetriesOnlyFailedAndDeadLettersEach(t *testing.T) {
	b, err := inmem.NewBroker()
	require.NoError(t, err)
	defer b.Close()
	pub, err := inmem.NewPublisher(b)
	require.NoError(t, err)
	sub, err := inmem.NewSubscriber(b, inmem.WithGroup("g"), inmem.WithConcurrency(2))
	require.NoError(t, err)
	mw, err := retry.NewBatch(retry.WithMaxAttempts(3), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(pub))
	require.NoError(t, err)

	var mu sync.Mutex
	calls := map[string]int{}
	h := func(_ context.Context, msgs []*message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		var be message.BatchError
		for i, m := range msgs {
			calls[m.ID]++
			switch {
			case m.ID == "poison-a":
				be.Fail(i, errors.New("poison a"))
			case m.ID == "poison-b":
				be.Fail(i, errors.New("poison b"))
			case m.ID == "flaky" && m.Delivery.Attempt == 1:
				be.Fail(i, errors.New("once"))
			}
		}
		return be.Err()
	}
	var msgs []*message.Message
	for i := range 20 {
		msgs = append(msgs, &message.Message{ID: fmt.Sprint("m", i), Key: fmt.Sprint("k", i%4)})
	}
	msgs = append(msgs, &message.Message{ID: "poison-a", Key: "pa"}, &message.Message{ID: "after-a", Key: "pa"},
		&message.Message{ID: "poison-b", Key: "pb"}, &message.Message{ID: "flaky", Key: "f"})
	require.NoError(t, pub.Publish(context.Background(), "orders", msgs...))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		_ = sub.SubscribeBatch(ctx, "orders", message.ChainBatch(h, mw), message.WithBatchMaxWait(time.Millisecond))
		close(done)
	}()
	waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
	defer waitCancel()
	require.NoError(t, b.WaitSettled(waitCtx, "orders", "g"))
	cancel()
	<-done
	dlt, err := b.Messages("orders.DLT")
	require.NoError(t, err)
	dead := map[string]string{}
	for _, m := range dlt {
		dead[m.ID] = m.Headers[retry.HeaderErrorMessage] + " after " + m.Headers[retry.HeaderAttempts]
	}
	require.Equal(t, map[string]string{"poison-a": "poison a after 3", "poison-b": "poison b after 3"}, dead)
	mu.Lock()
	defer mu.Unlock()
	for i := range 20 {
		require.Equal(t, 1, calls[fmt.Sprint("m", i)], "m%d of a key that never failed runs once", i)
	}
	require.Equal(t, 3, calls["poison-a"])
	require.Equal(t, 3, calls["poison-b"])
	require.Equal(t, 2, calls["flaky"])
	require.GreaterOrEqual(t, calls["after-a"], 1)
}

// TestBatchWholeErrorCountsPerMessage: a plain error fails every message
// of the batch; each is retried, then dead-lettered with that error.
func TestBatchWholeErrorCountsPerMessage(t *testing.T) {
	b, err := inmem.NewBroker()
	require.NoError(t, err)
	defer b.Close()
	pub, err := inmem.NewPublisher(b)
	require.NoError(t, err)
	sub, err := inmem.NewSubscriber(b, inmem.WithGroup("g"))
	require.NoError(t, err)
	mw, err := retry.NewBatch(retry.WithMaxAttempts(2), retry.WithConstantBackoff(time.Millisecond), retry.WithDeadLetter(pub))
	require.NoError(t, err)
	require.NoError(t, pub.Publish(context.Background(), "t", &message.Message{ID: "a", Key: "x"}, &message.Message{ID: "b"}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		_ = sub.SubscribeBatch(ctx, "t", mw(func(context.Context, []*message.Message) error { return errors.New("db down") }))
		close(done)
	}()
	waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
	defer waitCancel()
	require.NoError(t, b.WaitSettled(waitCtx, "t", "g"))
	cancel()
	<-done
	dlt, err := b.Messages("t.DLT")
	require.NoError(t, err)
	var dead []string
	for _, m := range dlt {
		dead = append(dead, m.ID+": "+m.Headers[retry.HeaderErrorMessage])
	}
	require.ElementsMatch(t, []string{"a: db down", "b: db down"}, dead)
}
