package inmem_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

func mustBroker(t *testing.T, opts ...inmem.BrokerOption) (*inmem.Broker, *inmem.Publisher) {
	t.Helper()
	b, err := inmem.NewBroker(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	pub, err := inmem.NewPublisher(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, pub
}

func publish(t *testing.T, pub message.Publisher, topic string, n int) {
	t.Helper()
	for i := range n {
		if err := pub.Publish(context.Background(), topic, &message.Message{Key: fmt.Sprintf("k%d", i%7), Payload: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// subscribe runs sub on topic until the test ends.
func subscribe(t *testing.T, b *inmem.Broker, group string, topic string, h message.Handler, opts ...inmem.SubscriberOption) {
	t.Helper()
	sub, err := inmem.NewSubscriber(b, append([]inmem.SubscriberOption{inmem.WithGroup(group)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- sub.Subscribe(ctx, topic, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("subscribe: %v", err)
		}
	})
}

func TestMessagesSnapshotInPublishOrder(t *testing.T) {
	b, pub := mustBroker(t, inmem.WithPartitions(4))
	if got, err := b.Messages("never-used"); err != nil || len(got) != 0 {
		t.Fatalf("unknown topic: %v, %v; want nothing, nil", got, err)
	}
	publish(t, pub, "orders", 50)
	got, err := b.Messages("orders")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 {
		t.Fatalf("%d messages, want 50", len(got))
	}
	parts := map[int32]bool{}
	for i, m := range got {
		if want := fmt.Sprintf("m%d", i); string(m.Payload) != want {
			t.Fatalf("message %d is %q, want %q: not in publish order", i, m.Payload, want)
		}
		if m.ID == "" || m.Delivery.Topic != "orders" || m.Delivery.Attempt != 0 {
			t.Fatalf("message %d: id %q delivery %+v", i, m.ID, m.Delivery)
		}
		parts[m.Delivery.Partition] = true
	}
	if len(parts) < 2 {
		t.Fatalf("all 50 on %d partition(s): the order across partitions was not exercised", len(parts))
	}
	// A snapshot: modifying it changes nothing in the broker.
	got[0].Payload[0] = 'X'
	got[0].Headers = map[string]string{"h": "v"}
	again, _ := b.Messages("orders")
	if string(again[0].Payload) != "m0" || again[0].Headers != nil {
		t.Fatalf("the broker's copy changed: %q %v", again[0].Payload, again[0].Headers)
	}
	if _, err := b.Messages("bad topic!"); !errors.Is(err, message.ErrInvalidTopic) {
		t.Fatalf("invalid topic: %v", err)
	}
	b.Close()
	if after, err := b.Messages("orders"); err != nil || len(after) != 50 {
		t.Fatalf("after Close: %d, %v", len(after), err)
	}
}

func TestWaitSettledWaitsForTheHandlers(t *testing.T) {
	b, pub := mustBroker(t, inmem.WithPartitions(4))
	ctx := context.Background()
	if err := b.WaitSettled(ctx, "orders", "billing"); err != nil {
		t.Fatalf("nothing published: %v", err)
	}
	publish(t, pub, "orders", 100)

	// The group has not joined: a wait with a short deadline says so.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	err := b.WaitSettled(short, "orders", "billing")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never joined") {
		t.Fatalf("group not joined: %v", err)
	}
	if _, err := b.Lag("orders", "billing"); !errors.Is(err, inmem.ErrUnknownGroup) {
		t.Fatalf("lag of a group that never joined: %v", err)
	}

	// Every handler waits for release; the last message's also for
	// releaseLast, so that exactly one is unsettled in between.
	release, releaseLast, others := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var handled atomic.Int64
	subscribe(t, b, "billing", "orders", func(ctx context.Context, m *message.Message) error {
		<-release
		if string(m.Payload) == "m99" {
			<-releaseLast
		}
		if handled.Add(1) == 99 && string(m.Payload) != "m99" {
			close(others)
		}
		return nil
	}, inmem.WithConcurrency(4))
	var relOnce, lastOnce sync.Once
	releaseAll := func() { relOnce.Do(func() { close(release) }) }
	releaseTheLast := func() { lastOnce.Do(func() { close(releaseLast) }) }
	// Runs before the subscriber's cleanup, which waits for the handlers.
	t.Cleanup(func() { releaseAll(); releaseTheLast() })

	// The handlers are blocked: the wait cannot succeed, and its error
	// names what is unsettled.
	short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
	err = b.WaitSettled(short, "orders", "billing")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "100 unsettled") || !strings.Contains(err.Error(), "next: id ") {
		t.Fatalf("blocked handlers: %v", err)
	}
	lag, err := b.Lag("orders", "billing")
	if err != nil || lag.Total != 100 || len(lag.Partitions) != 4 {
		t.Fatalf("lag while blocked: %+v, %v", lag, err)
	}

	releaseAll()
	<-others
	// 99 handled, one still running: still not settled.
	short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
	err = b.WaitSettled(short, "orders", "billing")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 unsettled") {
		t.Fatalf("one handler running: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- b.WaitSettled(ctx, "orders", "billing") }()
	releaseTheLast()
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if n := handled.Load(); n != 100 {
		t.Fatalf("WaitSettled returned after %d of 100 handlers", n)
	}
	lag, err = b.Lag("orders", "billing")
	if err != nil || lag.Total != 0 {
		t.Fatalf("lag after settling: %+v, %v", lag, err)
	}
	for _, p := range lag.Partitions {
		if p.Committed != p.End {
			t.Fatalf("partition %+v: committed != end after settling", p)
		}
	}
}

func TestWaitSettledIgnoresLaterMessagesAndCountsFailures(t *testing.T) {
	b, pub := mustBroker(t, inmem.WithPartitions(2))
	ctx := context.Background()
	var mu sync.Mutex
	fails := map[string]int{}
	subscribe(t, b, "g", "t", func(ctx context.Context, m *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Key == "k3" && fails[m.ID] < 2 {
			fails[m.ID]++
			return errors.New("not yet")
		}
		return nil
	}, inmem.WithRedeliveryBackoff(time.Millisecond, time.Millisecond))
	publish(t, pub, "t", 20)
	if err := b.WaitSettled(ctx, "t", "g"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for id, n := range fails {
		if n != 2 {
			t.Fatalf("%s failed %d times, then WaitSettled returned: it did not wait for the redelivery", id, n)
		}
	}
	if len(fails) != 3 {
		t.Fatalf("%d failing messages, want 3 (k3 of 20)", len(fails))
	}
	mu.Unlock()
}

func TestWaitSettledBadInputAndClose(t *testing.T) {
	b, pub := mustBroker(t)
	//lint:ignore SA1012 a nil context is the bad input under test
	if err := b.WaitSettled(nil, "t", "g"); !errors.Is(err, message.ErrInvalidConfig) { //nolint:staticcheck
		t.Fatalf("nil ctx: %v", err)
	}
	if err := b.WaitSettled(context.Background(), "no good", "g"); !errors.Is(err, message.ErrInvalidTopic) {
		t.Fatalf("bad topic: %v", err)
	}
	if err := b.WaitSettled(context.Background(), "t", ""); !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("empty group: %v", err)
	}
	publish(t, pub, "t", 1)
	errc := make(chan error, 1)
	go func() { errc <- b.WaitSettled(context.Background(), "t", "nobody") }()
	b.Close()
	if err := <-errc; !errors.Is(err, message.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestHandleRunsTheChainLikeASubscriber(t *testing.T) {
	ctx := context.Background()
	var seen []message.Delivery
	h := func(ctx context.Context, m *message.Message) error {
		seen = append(seen, m.Delivery)
		if m.Delivery.Attempt == 1 {
			panic("first attempt panics")
		}
		if m.Delivery.Attempt == 2 {
			return errors.New("second fails")
		}
		return nil
	}
	out, err := inmem.Handle(ctx, h, "orders", &message.Message{Key: "alice", Payload: []byte("x")}, inmem.HandleGroup("billing"))
	if err != nil {
		t.Fatal(err)
	}
	if !out.Settled || out.Attempts != 3 || len(out.Errors) != 2 {
		t.Fatalf("outcome %+v", out)
	}
	var pe *message.PanicError
	if !errors.As(out.Errors[0], &pe) {
		t.Fatalf("first error %v, want a *message.PanicError", out.Errors[0])
	}
	for i, d := range seen {
		if d.Attempt != i+1 || d.Topic != "orders" || d.Group != "billing" || d.System != inmem.System {
			t.Fatalf("attempt %d: delivery %+v", i+1, d)
		}
	}
	// The partition is the one a broker with as many partitions picks.
	b, pub := mustBroker(t, inmem.WithPartitions(3))
	if err := pub.Publish(ctx, "orders", &message.Message{Key: "alice"}); err != nil {
		t.Fatal(err)
	}
	stored, _ := b.Messages("orders")
	var part int32 = -1
	if _, err := inmem.Handle(ctx, func(ctx context.Context, m *message.Message) error {
		part = m.Delivery.Partition
		return nil
	}, "orders", &message.Message{Key: "alice"}, inmem.HandlePartitions(3)); err != nil {
		t.Fatal(err)
	}
	if part != stored[0].Delivery.Partition {
		t.Fatalf("Handle's partition %d, the broker's %d", part, stored[0].Delivery.Partition)
	}
}

func TestHandleGivesUpAndSaysWhy(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	calls := 0
	out, err := inmem.Handle(ctx, func(context.Context, *message.Message) error { calls++; return boom },
		"t", &message.Message{}, inmem.HandleMaxAttempts(4))
	if !errors.Is(err, boom) || out.Settled || out.Attempts != 4 || calls != 4 {
		t.Fatalf("%+v, %v after %d calls", out, err, calls)
	}
	if !strings.Contains(err.Error(), "not settled after 4 attempts") {
		t.Fatalf("error %q", err)
	}
	for _, tc := range []struct {
		name string
		run  func() error
		want error
	}{
		{"nil handler", func() error { _, err := inmem.Handle(ctx, nil, "t", &message.Message{}); return err }, message.ErrNilHandler},
		{"nil message", func() error {
			_, err := inmem.Handle(ctx, func(context.Context, *message.Message) error { return nil }, "t", nil)
			return err
		}, message.ErrInvalidMessage},
		{"bad topic", func() error {
			_, err := inmem.Handle(ctx, func(context.Context, *message.Message) error { return nil }, "a b", &message.Message{})
			return err
		}, message.ErrInvalidTopic},
		{"bad option", func() error {
			_, err := inmem.Handle(ctx, func(context.Context, *message.Message) error { return nil }, "t", &message.Message{}, inmem.HandleMaxAttempts(0), nil)
			return err
		}, message.ErrInvalidConfig},
	} {
		if err := tc.run(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := inmem.Handle(cctx, func(context.Context, *message.Message) error { return boom }, "t", &message.Message{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// The retry middleware dead-letters through an inmem publisher; Handle
// runs the chain, and the DLT content is read back with Messages.
func TestHandleWithRetryAndDeadLetter(t *testing.T) {
	b, pub := mustBroker(t)
	policy, err := retry.New(retry.WithMaxAttempts(3), retry.WithConstantBackoff(time.Hour), retry.WithDeadLetter(pub))
	if err != nil {
		t.Fatal(err)
	}
	h := message.Chain(func(context.Context, *message.Message) error { return errors.New("unknown SKU") }, policy)
	out, err := inmem.Handle(context.Background(), h, "orders", &message.Message{ID: "order-1", Payload: []byte("{}")}, inmem.HandleGroup("inventory"))
	if err != nil {
		t.Fatal(err)
	}
	// Attempts 1 and 2 ask for a redelivery after the hour-long backoff
	// (not waited for); attempt 3 dead-letters and settles.
	if !out.Settled || out.Attempts != 3 || len(out.Delays) != 2 || out.Delays[0] != time.Hour || out.Delays[1] != time.Hour {
		t.Fatalf("outcome %+v", out)
	}
	dlt, err := b.Messages("orders" + retry.DefaultDeadLetterSuffix)
	if err != nil || len(dlt) != 1 {
		t.Fatalf("dlt %v, %v", dlt, err)
	}
	info, err := retry.ParseDeadLetter(dlt[0])
	if err != nil {
		t.Fatal(err)
	}
	if dlt[0].ID != "order-1" || info.Attempts != 3 || info.Group != "inventory" || !strings.Contains(info.Error, "unknown SKU") {
		t.Fatalf("dead letter %s: %+v", dlt[0].ID, info)
	}
}
