package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func deadLetters(t *testing.T, n int, spring bool) []*message.Message {
	t.Helper()
	pub := &fakePublisher{}
	opts := []retry.Option{retry.WithDeadLetter(pub), retry.WithMaxAttempts(1)}
	if spring {
		opts = append(opts, retry.SpringHeaders())
	}
	h := mustNew(t, opts...)(func(context.Context, *message.Message) error { return errBoom })
	for i := range n {
		m := delivered("orders", 1)
		m.ID = string(rune('a' + i))
		m.Delivery.Offset = int64(i)
		require.NoError(t, h(context.Background(), m))
	}
	_, msgs := pub.published()
	require.Len(t, msgs, n)
	return msgs
}

func TestReplay(t *testing.T) {
	for _, spring := range []bool{false, true} {
		dlt := deadLetters(t, 3, spring)
		sub := &fakeSubscriber{msgs: dlt}
		pub := &fakePublisher{}
		stats, err := retry.Replay(context.Background(), sub, pub, "orders.DLT", retry.WithIdleTimeout(50*time.Millisecond))
		require.NoError(t, err)
		assert.Equal(t, retry.ReplayStats{Replayed: 3}, stats)
		topics, msgs := pub.published()
		assert.Equal(t, []string{"orders", "orders", "orders"}, topics)
		for i, m := range msgs {
			assert.Equal(t, dlt[i].ID, m.ID)
			assert.Equal(t, "k", m.Key)
			assert.Equal(t, map[string]string{"app": "v"}, m.Headers, "dead-letter headers stripped")
		}
		assert.Equal(t, []string{"a", "b", "c"}, sub.settledIDs())
	}
}

func TestReplayLimitAndFilter(t *testing.T) {
	dlt := deadLetters(t, 5, false)
	sub := &fakeSubscriber{msgs: dlt}
	pub := &fakePublisher{}
	stats, err := retry.Replay(context.Background(), sub, pub, "orders.DLT",
		retry.WithIdleTimeout(0), // only the limit may end it
		retry.WithLimit(2),
		retry.WithFilter(func(m *message.Message, info retry.DeadLetterInfo) bool { return info.Offset != 1 }))
	require.NoError(t, err)
	assert.Equal(t, retry.ReplayStats{Replayed: 2, Skipped: 1}, stats)
	_, msgs := pub.published()
	require.Len(t, msgs, 2)
	assert.Equal(t, "a", msgs[0].ID)
	assert.Equal(t, "c", msgs[1].ID)
	assert.Equal(t, []string{"a", "b", "c"}, sub.settledIDs(), "d and e stay on the DLT")
}

func TestReplayPublishFailureLeavesMessage(t *testing.T) {
	dlt := deadLetters(t, 2, false)
	sub := &fakeSubscriber{msgs: dlt}
	pub := &fakePublisher{failN: 1}
	stats, err := retry.Replay(context.Background(), sub, pub, "orders.DLT", retry.WithIdleTimeout(0))
	require.ErrorIs(t, err, errFail)
	assert.Contains(t, err.Error(), `"a"`)
	assert.Equal(t, retry.ReplayStats{}, stats)
	assert.Empty(t, sub.settledIDs(), "not settled: the message stays on the DLT")
}

func TestReplayMalformedStops(t *testing.T) {
	sub := &fakeSubscriber{msgs: []*message.Message{{ID: "x", Headers: map[string]string{retry.HeaderOriginalTopic: "o", retry.HeaderAttempts: "many"}}}}
	pub := &fakePublisher{}
	_, err := retry.Replay(context.Background(), sub, pub, "o.DLT", retry.WithIdleTimeout(0))
	require.ErrorIs(t, err, retry.ErrMalformedHeader)
	assert.Empty(t, sub.settledIDs())
	_, msgs := pub.published()
	assert.Empty(t, msgs)
}

func TestReplayContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sub := &fakeSubscriber{}
	done := make(chan error, 1)
	go func() {
		_, err := retry.Replay(ctx, sub, &fakePublisher{}, "o.DLT", retry.WithIdleTimeout(0))
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(30 * time.Second):
		t.Fatal("Replay did not return after ctx ended")
	}
}

func TestReplayIdleTimeoutEndsAnEmptyTopic(t *testing.T) {
	stats, err := retry.Replay(context.Background(), &fakeSubscriber{}, &fakePublisher{}, "o.DLT", retry.WithIdleTimeout(10*time.Millisecond))
	require.NoError(t, err)
	assert.Equal(t, retry.ReplayStats{}, stats)
}

func TestReplayInvalidArguments(t *testing.T) {
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"empty topic":    func() error { _, err := retry.Replay(ctx, &fakeSubscriber{}, &fakePublisher{}, ""); return err },
		"nil subscriber": func() error { _, err := retry.Replay(ctx, nil, &fakePublisher{}, "t"); return err },
		"negative limit": func() error {
			_, err := retry.Replay(ctx, &fakeSubscriber{}, &fakePublisher{}, "t", retry.WithLimit(-1))
			return err
		},
		"nil filter": func() error {
			_, err := retry.Replay(ctx, &fakeSubscriber{}, &fakePublisher{}, "t", retry.WithFilter(nil))
			return err
		},
		"negative idle": func() error {
			_, err := retry.Replay(ctx, &fakeSubscriber{}, &fakePublisher{}, "t", retry.WithIdleTimeout(-1))
			return err
		},
		"zero option val": func() error {
			_, err := retry.Replay(ctx, &fakeSubscriber{}, &fakePublisher{}, "t", retry.ReplayOption{})
			return err
		},
	} {
		err := call()
		assert.True(t, errors.Is(err, message.ErrInvalidConfig) || errors.Is(err, message.ErrInvalidTopic), "%s: %v", name, err)
	}
}
