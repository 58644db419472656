package retry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// A handler that always fails is tried three times, then its message is
// parked on orders.DLT with the error attached, and the consumer moves on.
// Replay later brings it back to orders.
func Example() {
	b, err := inmem.NewBroker()
	if err != nil {
		panic(err)
	}
	defer b.Close()
	pub, err := inmem.NewPublisher(b)
	if err != nil {
		panic(err)
	}
	defer pub.Close()

	mw, err := retry.New(
		retry.WithMaxAttempts(3),
		retry.WithConstantBackoff(10*time.Millisecond),
		retry.WithDeadLetter(pub), // default topic: <topic>.DLT
		retry.OnRetry(func(_ context.Context, ev retry.RetryEvent) {
			fmt.Printf("attempt %d failed: %v\n", ev.Attempt, ev.Err)
		}),
	)
	if err != nil {
		panic(err)
	}
	handle := func(ctx context.Context, msg *message.Message) error {
		return errors.New("payment service unavailable")
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	orders, _ := inmem.NewSubscriber(b, inmem.WithGroup("billing"))
	defer orders.Close()
	wg.Add(1)
	go func() { defer wg.Done(); _ = orders.Subscribe(ctx, "orders", message.Chain(handle, mw)) }()

	dead := make(chan *message.Message, 1)
	dlt, _ := inmem.NewSubscriber(b, inmem.WithGroup("ops"))
	defer dlt.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = dlt.Subscribe(ctx, "orders.DLT", func(_ context.Context, m *message.Message) error {
			dead <- m.Clone()
			return nil
		})
	}()

	if err := pub.Publish(ctx, "orders", &message.Message{ID: "order-42", Payload: []byte(`{"total":99}`)}); err != nil {
		panic(err)
	}
	m := <-dead
	info, err := retry.ParseDeadLetter(m)
	if err != nil {
		panic(err)
	}
	fmt.Printf("dead-lettered %s from %s (group %s) after %d attempts: %s\n", m.ID, info.Topic, info.Group, info.Attempts, info.Error)
	fmt.Println(m.Headers[retry.HeaderAttempts], string(m.Payload))
	// Output:
	// attempt 1 failed: payment service unavailable
	// attempt 2 failed: payment service unavailable
	// dead-lettered order-42 from orders (group billing) after 3 attempts: payment service unavailable
	// 3 {"total":99}
}

// Replay moves dead-lettered messages back to their original topic once
// the cause is fixed. It stops after WithLimit messages or when the
// dead-letter topic has been idle for WithIdleTimeout.
func ExampleReplay() {
	b, err := inmem.NewBroker()
	if err != nil {
		panic(err)
	}
	defer b.Close()
	pub, err := inmem.NewPublisher(b)
	if err != nil {
		panic(err)
	}
	defer pub.Close()

	ctx := context.Background()
	// A dead-letter message, as the middleware writes it.
	_ = pub.Publish(ctx, "orders.DLT", &message.Message{ID: "order-42", Payload: []byte("p"), Headers: map[string]string{
		retry.HeaderOriginalTopic: "orders", retry.HeaderAttempts: "3", retry.HeaderErrorMessage: "timeout",
	}})

	sub, _ := inmem.NewSubscriber(b, inmem.WithGroup("replay"))
	defer sub.Close()
	stats, err := retry.Replay(ctx, sub, pub, "orders.DLT",
		retry.WithIdleTimeout(100*time.Millisecond),
		retry.WithFilter(func(m *message.Message, info retry.DeadLetterInfo) bool { return info.Error == "timeout" }))
	fmt.Println(stats.Replayed, stats.Skipped, err)

	back, _ := inmem.NewSubscriber(b, inmem.WithGroup("billing"))
	defer back.Close()
	rctx, cancel := context.WithCancel(ctx)
	_ = back.Subscribe(rctx, "orders", func(_ context.Context, m *message.Message) error {
		fmt.Println(m.ID, len(m.Headers))
		cancel()
		return nil
	})
	// Output:
	// 1 0 <nil>
	// order-42 0
}
