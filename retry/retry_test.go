package retry_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

var errBoom = errors.New("boom")

// counting returns a handler that fails with errBoom until it has been
// called okAfter times (never when okAfter is 0), and its call counter.
func counting(okAfter int) (message.Handler, *atomic.Int64) {
	var n atomic.Int64
	return func(ctx context.Context, msg *message.Message) error {
		c := n.Add(1)
		if okAfter > 0 && c >= int64(okAfter) {
			return nil
		}
		return errBoom
	}, &n
}

func mustNew(t *testing.T, opts ...retry.Option) message.Middleware {
	t.Helper()
	mw, err := retry.New(opts...)
	require.NoError(t, err)
	return mw
}

func TestSuccessPath(t *testing.T) {
	pub := &fakePublisher{}
	h, n := counting(1)
	err := deliver(context.Background(), mustNew(t, retry.WithDeadLetter(pub))(h), delivered("orders", 1))
	require.NoError(t, err)
	assert.EqualValues(t, 1, n.Load())
	_, msgs := pub.published()
	assert.Empty(t, msgs)
}

func TestSucceedsOnRetry(t *testing.T) {
	pub := &fakePublisher{}
	var retries []retry.RetryEvent
	h, n := counting(3)
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(5), retry.WithConstantBackoff(time.Millisecond),
		retry.OnRetry(func(_ context.Context, ev retry.RetryEvent) { retries = append(retries, ev) }))
	require.NoError(t, deliver(context.Background(), mw(h), delivered("orders", 1)))
	assert.EqualValues(t, 3, n.Load())
	require.Len(t, retries, 2)
	assert.Equal(t, 1, retries[0].Attempt)
	assert.Equal(t, 2, retries[1].Attempt)
	assert.ErrorIs(t, retries[0].Err, errBoom)
	assert.Equal(t, time.Millisecond, retries[0].Delay)
	_, msgs := pub.published()
	assert.Empty(t, msgs)
}

func TestExhaustedGoesToDeadLetter(t *testing.T) {
	pub := &fakePublisher{}
	var events []retry.DeadLetterEvent
	h, n := counting(0)
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(4), retry.WithConstantBackoff(0),
		retry.OnDeadLetter(func(_ context.Context, ev retry.DeadLetterEvent) { events = append(events, ev) }))
	msg := delivered("orders", 1)
	msg.Time = time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.UTC)
	before := time.Now().UTC().Truncate(time.Millisecond)
	require.NoError(t, deliver(context.Background(), mw(h), msg), "dead-lettered: the original is settled")
	after := time.Now().UTC()

	assert.EqualValues(t, 4, n.Load(), "exactly WithMaxAttempts handler calls")
	topics, msgs := pub.published()
	require.Len(t, msgs, 1)
	assert.Equal(t, "orders.DLT", topics[0])
	dl := msgs[0]
	assert.NotSame(t, msg, dl)
	assert.Equal(t, msg.ID, dl.ID)
	assert.Equal(t, msg.Key, dl.Key)
	assert.Equal(t, msg.Payload, dl.Payload)
	assert.True(t, msg.Time.Equal(dl.Time))
	assert.Equal(t, "v", dl.Headers["app"])
	assert.Len(t, msg.Headers, 1, "the original's headers are untouched")
	h2 := dl.Headers
	assert.Equal(t, "orders", h2[retry.HeaderOriginalTopic])
	assert.Equal(t, "2", h2[retry.HeaderOriginalPartition])
	assert.Equal(t, "41", h2[retry.HeaderOriginalOffset])
	assert.Equal(t, "g", h2[retry.HeaderOriginalGroup])
	assert.Equal(t, "boom", h2[retry.HeaderErrorMessage])
	assert.Equal(t, "*errors.errorString", h2[retry.HeaderErrorType])
	assert.Equal(t, "4", h2[retry.HeaderAttempts])
	for _, name := range []string{retry.HeaderFirstFailure, retry.HeaderLastFailure} {
		ts, err := time.Parse(retry.TimeFormat, h2[name])
		require.NoError(t, err, name)
		assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`, h2[name])
		assert.False(t, ts.Before(before) || ts.After(after), "%s %v not within [%v, %v]", name, ts, before, after)
	}

	info, err := retry.ParseDeadLetter(dl)
	require.NoError(t, err)
	assert.Equal(t, "orders", info.Topic)
	assert.EqualValues(t, 2, info.Partition)
	assert.EqualValues(t, 41, info.Offset)
	assert.Equal(t, "g", info.Group)
	assert.Equal(t, 4, info.Attempts)
	assert.Equal(t, "boom", info.Error)
	assert.False(t, info.Spring)

	require.Len(t, events, 1)
	assert.Equal(t, "orders.DLT", events[0].Topic)
	assert.Equal(t, 4, events[0].Attempts)
	assert.NoError(t, events[0].PublishErr)
	assert.ErrorIs(t, events[0].Err, errBoom)
}

func TestPermanentSkipsAttempts(t *testing.T) {
	errBad := errors.New("bad input")
	for name, tc := range map[string]struct {
		err  error
		opts []retry.Option
	}{
		"retry.Permanent":   {err: retry.Permanent(errBad)},
		"backoff.Permanent": {err: backoff.Permanent(errBad)},
		"wrapped Permanent": {err: fmt.Errorf("ctx: %w", retry.Permanent(errBad))},
		"classifier":        {err: errBad, opts: []retry.Option{retry.WithNotRetryable(func(err error) bool { return errors.Is(err, errBad) })}},
	} {
		t.Run(name, func(t *testing.T) {
			pub := &fakePublisher{}
			var calls int
			h := func(context.Context, *message.Message) error { calls++; return tc.err }
			opts := append([]retry.Option{retry.WithDeadLetter(pub), retry.WithMaxAttempts(5), retry.WithConstantBackoff(0)}, tc.opts...)
			require.NoError(t, deliver(context.Background(), mustNew(t, opts...)(h), delivered("orders", 1)))
			assert.Equal(t, 1, calls)
			_, msgs := pub.published()
			require.Len(t, msgs, 1)
			assert.Equal(t, "1", msgs[0].Headers[retry.HeaderAttempts])
			assert.Contains(t, msgs[0].Headers[retry.HeaderErrorMessage], "bad input")
		})
	}
	assert.NoError(t, retry.Permanent(nil))
	assert.True(t, retry.IsPermanent(retry.Permanent(errBad)))
	assert.False(t, retry.IsPermanent(errBad))
	assert.ErrorIs(t, retry.Permanent(errBad), errBad)
}

func TestPanicCountsAsFailure(t *testing.T) {
	pub := &fakePublisher{}
	var calls int
	h := func(context.Context, *message.Message) error { calls++; panic("kaput") }
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(2), retry.WithConstantBackoff(0), retry.SpringHeaders())
	require.NoError(t, deliver(context.Background(), mw(h), delivered("orders", 1)))
	assert.Equal(t, 2, calls)
	_, msgs := pub.published()
	require.Len(t, msgs, 1)
	assert.Equal(t, "kaput", msgs[0].Headers[retry.HeaderSpringExceptionMessage])
	assert.Equal(t, "*message.PanicError", msgs[0].Headers[retry.HeaderSpringExceptionFQCN])
	assert.Contains(t, msgs[0].Headers[retry.HeaderSpringExceptionStacktrace], "goroutine")
}

func TestNoDeadLetterReturnsError(t *testing.T) {
	h, n := counting(0)
	err := deliver(context.Background(), mustNew(t, retry.WithMaxAttempts(3), retry.WithConstantBackoff(0))(h), delivered("orders", 1))
	assert.ErrorIs(t, err, errBoom, "the subscriber redelivers: nothing is lost")
	assert.EqualValues(t, 3, n.Load())
}

func TestDeliveryAttemptCountsTowardsBudget(t *testing.T) {
	for _, tc := range []struct {
		attempt, max, wantCalls int
	}{
		{attempt: 0, max: 5, wantCalls: 5}, // not from a subscriber: treated as 1
		{attempt: 1, max: 5, wantCalls: 5},
		{attempt: 3, max: 5, wantCalls: 3},
		{attempt: 5, max: 5, wantCalls: 1},
		{attempt: 9, max: 5, wantCalls: 1}, // over budget: one more call, then dead-letter
	} {
		t.Run(fmt.Sprintf("attempt %d of %d", tc.attempt, tc.max), func(t *testing.T) {
			pub := &fakePublisher{}
			h, n := counting(0)
			mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(tc.max), retry.WithConstantBackoff(0))
			require.NoError(t, deliver(context.Background(), mw(h), delivered("orders", tc.attempt)))
			assert.EqualValues(t, tc.wantCalls, n.Load())
			_, msgs := pub.published()
			require.Len(t, msgs, 1)
			assert.Equal(t, strconv.Itoa(max(tc.attempt, 1)+tc.wantCalls-1), msgs[0].Headers[retry.HeaderAttempts])
		})
	}
}

func TestDeadLetterPublishFailureRedelivers(t *testing.T) {
	pub := &fakePublisher{failN: 2}
	var events []retry.DeadLetterEvent
	h, n := counting(0)
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(3), retry.WithConstantBackoff(0),
		retry.OnDeadLetter(func(_ context.Context, ev retry.DeadLetterEvent) { events = append(events, ev) }))
	handler := mw(h)
	msg := delivered("orders", 1)

	err := deliver(context.Background(), handler, msg)
	require.Error(t, err, "a failed dead-letter publish must not settle the original")
	assert.ErrorIs(t, err, errFail)
	assert.ErrorIs(t, err, errBoom)
	_, ok := message.RedeliveryDelay(err)
	assert.False(t, ok, "the subscriber's own backoff applies")
	assert.EqualValues(t, 3, n.Load())
	assert.Equal(t, 3, msg.Delivery.Attempt)

	// The subscriber redelivers with Attempt+1: the middleware remembers
	// that the attempts are exhausted and only retries the publish.
	msg.Delivery.Attempt = 4
	require.ErrorIs(t, handler(context.Background(), msg), errFail)
	msg.Delivery.Attempt = 5
	require.NoError(t, handler(context.Background(), msg))
	assert.EqualValues(t, 3, n.Load(), "no extra handler calls after exhaustion")

	_, msgs := pub.published()
	require.Len(t, msgs, 1)
	assert.Equal(t, "3", msgs[0].Headers[retry.HeaderAttempts])
	require.Len(t, events, 3)
	assert.ErrorIs(t, events[0].PublishErr, errFail)
	assert.ErrorIs(t, events[1].PublishErr, errFail)
	assert.NoError(t, events[2].PublishErr)
}

// TestNeverSleeps: between attempts the middleware returns at once with
// the backoff in a message.RedeliverAfter error, for the subscriber to
// wait without holding a worker; an hour's backoff is an hour's delay in
// the error, not a blocked handler.
func TestNeverSleeps(t *testing.T) {
	pub := &fakePublisher{}
	h, n := counting(0)
	var events []retry.RetryEvent
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithConstantBackoff(time.Hour),
		retry.OnRetry(func(_ context.Context, ev retry.RetryEvent) { events = append(events, ev) }))
	msg := delivered("orders", 1)
	err := mw(h)(context.Background(), msg)
	var re *message.RedeliverAfterError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, time.Hour, re.After)
	assert.ErrorIs(t, err, errBoom, "the cause is wrapped")
	assert.EqualValues(t, 1, n.Load(), "one handler call per delivery")
	require.Len(t, events, 1)
	assert.Equal(t, time.Hour, events[0].Delay)
	_, msgs := pub.published()
	assert.Empty(t, msgs)
}

// TestContextEndedRedelivers: a failure while the handler's context is
// ended (the subscriber gave up waiting at shutdown) is returned as it is,
// for a redelivery later, neither retried nor dead-lettered.
func TestContextEndedRedelivers(t *testing.T) {
	pub := &fakePublisher{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h, n := counting(0)
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(1))
	err := mw(h)(ctx, delivered("orders", 1))
	assert.ErrorIs(t, err, errBoom)
	_, ok := message.RedeliveryDelay(err)
	assert.False(t, ok)
	assert.EqualValues(t, 1, n.Load())
	_, msgs := pub.published()
	assert.Empty(t, msgs, "shutdown: redeliver, not dead-letter")
}

func TestExponentialBackoffJitter(t *testing.T) {
	var delays []time.Duration
	h, _ := counting(0)
	mw := mustNew(t, retry.WithExponentialBackoff(time.Millisecond, 4*time.Millisecond), retry.WithMaxAttempts(6),
		retry.OnRetry(func(_ context.Context, ev retry.RetryEvent) { delays = append(delays, ev.Delay) }))
	require.ErrorIs(t, deliver(context.Background(), mw(h), delivered("orders", 1)), errBoom)
	require.Len(t, delays, 5)
	base := []time.Duration{1, 2, 4, 4, 4}
	for i, d := range delays {
		lo := time.Duration(float64(base[i]*time.Millisecond) * 0.5)
		hi := time.Duration(float64(base[i]*time.Millisecond) * 1.5)
		assert.True(t, d >= lo && d <= hi, "delay %d = %v not in [%v, %v]", i, d, lo, hi)
	}
}

func TestCustomBackoffStop(t *testing.T) {
	h, n := counting(0)
	mw := mustNew(t, retry.WithMaxAttempts(0), retry.WithMaxElapsedTime(time.Hour),
		retry.WithBackoff(func() backoff.BackOff { return backoff.WithMaxRetries(&backoff.ZeroBackOff{}, 2) }))
	require.ErrorIs(t, deliver(context.Background(), mw(h), delivered("orders", 1)), errBoom)
	assert.EqualValues(t, 3, n.Load(), "first call plus the policy's 2 retries")
}

func TestDeadLetterTopicNaming(t *testing.T) {
	t.Run("custom", func(t *testing.T) {
		pub := &fakePublisher{}
		h, _ := counting(0)
		mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(1),
			retry.WithDeadLetterTopic(func(m *message.Message) string { return m.Delivery.Topic + "-dlt" }))
		require.NoError(t, deliver(context.Background(), mw(h), delivered("orders", 1)))
		topics, _ := pub.published()
		assert.Equal(t, []string{"orders-dlt"}, topics)
	})
	t.Run("no topic to name it from", func(t *testing.T) {
		pub := &fakePublisher{}
		h, _ := counting(0)
		mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(1))
		err := deliver(context.Background(), mw(h), delivered("", 1))
		require.ErrorIs(t, err, errBoom, "not settled: redelivered")
		assert.Contains(t, err.Error(), "no dead-letter topic")
	})
	t.Run("naming function returns empty", func(t *testing.T) {
		pub := &fakePublisher{}
		h, _ := counting(0)
		mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(1),
			retry.WithDeadLetterTopic(func(*message.Message) string { return "" }))
		require.Error(t, deliver(context.Background(), mw(h), delivered("orders", 1)))
		_, msgs := pub.published()
		assert.Empty(t, msgs)
	})
}

func TestErrorTextTruncatedToValidUTF8(t *testing.T) {
	pub := &fakePublisher{}
	long := strings.Repeat("é", 100) + "\xff"
	h := func(context.Context, *message.Message) error { return errors.New(long) }
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(1), retry.WithMaxErrorLength(15))
	require.NoError(t, deliver(context.Background(), mw(h), delivered("orders", 1)))
	_, msgs := pub.published()
	got := msgs[0].Headers[retry.HeaderErrorMessage]
	assert.Equal(t, strings.Repeat("é", 7), got)
}

func TestInvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		opt  retry.Option
		want string
	}{
		{retry.WithMaxAttempts(-1), "WithMaxAttempts(-1)"},
		{retry.WithMaxAttempts(0), "WithMaxElapsedTime"},
		{retry.WithMaxElapsedTime(-time.Second), "WithMaxElapsedTime(-1s)"},
		{retry.WithExponentialBackoff(0, time.Second), "WithExponentialBackoff"},
		{retry.WithExponentialBackoff(time.Second, time.Millisecond), "max delay"},
		{retry.WithConstantBackoff(-1), "WithConstantBackoff"},
		{retry.WithBackoff(nil), "WithBackoff"},
		{retry.WithNotRetryable(nil), "WithNotRetryable"},
		{retry.WithDeadLetter(nil), "WithDeadLetter"},
		{retry.WithDeadLetterTopic(nil), "WithDeadLetterTopic"},
		{retry.WithMaxErrorLength(-1), "WithMaxErrorLength"},
		{retry.OnRetry(nil), "OnRetry"},
		{retry.WithRedeliver(nil), "WithRedeliver"},
		{retry.OnDeadLetter(nil), "OnDeadLetter"},
		{retry.Option{}, "zero Option"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			mw, err := retry.New(tc.opt)
			require.ErrorIs(t, err, message.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.want)
			assert.Nil(t, mw)
		})
	}
}

func TestConcurrentHandlersHaveTheirOwnBackoff(t *testing.T) {
	pub := &fakePublisher{}
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(3),
		retry.WithExponentialBackoff(time.Microsecond, 10*time.Microsecond))
	h := mw(func(_ context.Context, msg *message.Message) error { return errBoom })
	const n = 16
	errs := make(chan error, n)
	for i := range n {
		go func() {
			m := delivered("orders", 1)
			m.ID = strconv.Itoa(i)
			errs <- deliver(context.Background(), h, m)
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	_, msgs := pub.published()
	require.Len(t, msgs, n)
	for _, m := range msgs {
		assert.Equal(t, "3", m.Headers[retry.HeaderAttempts])
	}
}

func TestRedeliverErrorsPassThrough(t *testing.T) {
	errBusy := errors.New("busy elsewhere")
	pub := &fakePublisher{}
	calls := 0
	h := func(context.Context, *message.Message) error {
		calls++
		if calls == 1 {
			return errBoom // retried in-process
		}
		return fmt.Errorf("claim: %w", errBusy)
	}
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(2), retry.WithConstantBackoff(0),
		retry.WithRedeliver(func(err error) bool { return errors.Is(err, errBusy) }))
	msg := delivered("orders", 1)
	require.ErrorIs(t, deliver(context.Background(), mw(h), msg), errBusy)
	assert.Equal(t, 2, calls)
	msg.Delivery.Attempt = 9 // far over budget: still not dead-lettered
	require.ErrorIs(t, deliver(context.Background(), mw(h), msg), errBusy)
	assert.Equal(t, 3, calls)
	_, msgs := pub.published()
	assert.Empty(t, msgs)
}

func TestErrRedeliverPassesThroughByDefault(t *testing.T) {
	pub := &fakePublisher{}
	calls := 0
	h := func(context.Context, *message.Message) error {
		calls++
		return fmt.Errorf("claimed elsewhere: %w", message.ErrRedeliver)
	}
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(3), retry.WithConstantBackoff(0))
	msg := delivered("orders", 1)
	require.ErrorIs(t, deliver(context.Background(), mw(h), msg), message.ErrRedeliver)
	assert.Equal(t, 1, calls, "a not-now error must not be retried in-process")
	msg.Delivery.Attempt = 9 // over budget: still not dead-lettered
	require.ErrorIs(t, deliver(context.Background(), mw(h), msg), message.ErrRedeliver)
	_, msgs := pub.published()
	assert.Empty(t, msgs, "a not-now error must never be dead-lettered")
}

// TestDeadLetterCopyDropsAMQPExpiration: a parked copy must not carry the
// AMQP adapter's per-message TTL, or the broker could drop it from the DLT.
func TestDeadLetterCopyDropsAMQPExpiration(t *testing.T) {
	pub := &fakePublisher{}
	h, _ := counting(0)
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(1))
	msg := delivered("orders", 1)
	msg.Headers["amqp-expiration"] = "60000"
	msg.Headers["amqp-content-type"] = "application/json"
	require.NoError(t, deliver(context.Background(), mw(h), msg))
	_, msgs := pub.published()
	require.Len(t, msgs, 1)
	assert.NotContains(t, msgs[0].Headers, "amqp-expiration")
	assert.Equal(t, "application/json", msgs[0].Headers["amqp-content-type"], "other property headers are kept")
	assert.Equal(t, "60000", msg.Headers["amqp-expiration"], "the original is untouched")
}

// TestRedeliveryAfterReconnectKeepsCount: a message waiting between
// attempts when an AMQP connection is lost comes back from the broker as a
// new delivery marked redelivered (Attempt 2). The middleware knows its
// failures by ID, so the count goes on (attempt 3 here) instead of
// starting again from the broker's number.
func TestRedeliveryAfterReconnectKeepsCount(t *testing.T) {
	pub := &fakePublisher{}
	h, n := counting(0)
	mw := mustNew(t, retry.WithDeadLetter(pub), retry.WithMaxAttempts(3), retry.WithConstantBackoff(time.Millisecond))(h)
	msg := delivered("orders", 1)
	msg.Delivery.Partition, msg.Delivery.Offset = -1, -1 // AMQP
	for attempt := 1; attempt <= 2; attempt++ {
		msg.Delivery.Attempt = attempt
		_, ok := message.RedeliveryDelay(mw(context.Background(), msg))
		require.True(t, ok, "attempt %d of 3: retried", attempt)
	}
	// The connection is lost while it waits; the broker delivers it again.
	again := delivered("orders", 2)
	again.Delivery.Partition, again.Delivery.Offset, again.Delivery.Redelivered = -1, -1, true
	require.NoError(t, mw(context.Background(), again), "attempt 3 of 3: dead-lettered")
	assert.EqualValues(t, 3, n.Load())
	_, msgs := pub.published()
	require.Len(t, msgs, 1)
	assert.Equal(t, "3", msgs[0].Headers[retry.HeaderAttempts])
}
