package inmem_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// Publish order events keyed by customer and consume them in a group: events
// of one customer arrive in order.
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
	ctx := context.Background()
	for i, customer := range []string{"alice", "bob", "alice"} {
		_ = pub.Publish(ctx, "order-events", &message.Message{
			Key:     customer,
			Payload: fmt.Appendf(nil, "order-%d", i+1),
		})
	}

	sub, err := inmem.NewSubscriber(b, inmem.WithGroup("notification-service"))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	seen := 0
	err = sub.Subscribe(ctx, "order-events", func(ctx context.Context, m *message.Message) error {
		if m.Key == "alice" {
			fmt.Printf("%s: %s (attempt %d)\n", m.Key, m.Payload, m.Delivery.Attempt)
		}
		if seen++; seen == 3 {
			cancel() // Subscribe drains and returns nil
		}
		return nil
	})
	fmt.Println("subscribe returned", err)
	// Output:
	// alice: order-1 (attempt 1)
	// alice: order-3 (attempt 1)
	// subscribe returned <nil>
}

// Two groups each receive every message.
func ExampleNewSubscriber_groups() {
	b, _ := inmem.NewBroker()
	defer b.Close()
	pub, _ := inmem.NewPublisher(b)
	_ = pub.Publish(context.Background(), "signups", &message.Message{Payload: []byte("ada")})

	for _, group := range []string{"welcome-mail", "analytics"} {
		sub, _ := inmem.NewSubscriber(b, inmem.WithGroup(group))
		ctx, cancel := context.WithCancel(context.Background())
		_ = sub.Subscribe(ctx, "signups", func(ctx context.Context, m *message.Message) error {
			fmt.Println(m.Delivery.Group, "got", string(m.Payload))
			cancel()
			return nil
		})
	}
	// Output:
	// welcome-mail got ada
	// analytics got ada
}

// A bad option value is an error from the constructor that names the
// option; nothing is clamped.
func ExampleNewBroker_invalidOption() {
	_, err := inmem.NewBroker(inmem.WithPartitions(0))
	fmt.Println(errors.Is(err, message.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// inmem: ferry: invalid configuration: WithPartitions(0): want 1..65536
}

// A unit test of a service reads "publish; wait; assert": WaitSettled
// returns once the group has handled everything published, and Messages
// shows what the service published in turn (here its notifications).
func ExampleBroker_WaitSettled() {
	ctx := context.Background()
	b, _ := inmem.NewBroker()
	defer b.Close()
	pub, _ := inmem.NewPublisher(b)

	// The service under test: for each order, publish a notification.
	notify := func(ctx context.Context, m *message.Message) error {
		return pub.Publish(ctx, "notifications", &message.Message{Key: m.Key, Payload: append([]byte("confirmed "), m.Payload...)})
	}
	sub, _ := inmem.NewSubscriber(b, inmem.WithGroup("notification-service"), inmem.WithConcurrency(4))
	svcCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sub.Subscribe(svcCtx, "orders", notify) }()

	_ = pub.Publish(ctx, "orders", &message.Message{Key: "alice", Payload: []byte("order-1")})
	_ = pub.Publish(ctx, "orders", &message.Message{Key: "alice", Payload: []byte("order-2")})
	if err := b.WaitSettled(ctx, "orders", "notification-service"); err != nil {
		fmt.Println(err)
	}
	sent, _ := b.Messages("notifications")
	for _, m := range sent {
		fmt.Printf("%s: %s\n", m.Key, m.Payload)
	}
	lag, _ := b.Lag("orders", "notification-service")
	fmt.Println("lag:", lag.Total)
	stop()
	fmt.Println("subscribe returned", <-done)
	// Output:
	// alice: confirmed order-1
	// alice: confirmed order-2
	// lag: 0
	// subscribe returned <nil>
}

// Handle runs a handler chain on one message without a broker: here the
// retry middleware gives up after three attempts (its backoff is not
// waited for) and dead-letters the message, which Messages shows.
func ExampleHandle() {
	b, _ := inmem.NewBroker()
	defer b.Close()
	pub, _ := inmem.NewPublisher(b)
	policy, _ := retry.New(retry.WithMaxAttempts(3), retry.WithConstantBackoff(time.Minute), retry.WithDeadLetter(pub))
	reserve := func(ctx context.Context, m *message.Message) error {
		return fmt.Errorf("attempt %d: unknown SKU", m.Delivery.Attempt)
	}

	out, err := inmem.Handle(context.Background(), message.Chain(reserve, policy), "orders",
		&message.Message{ID: "order-7", Payload: []byte(`{"sku":"X"}`)}, inmem.HandleGroup("inventory-service"))
	fmt.Println("settled:", out.Settled, "attempts:", out.Attempts, "err:", err)
	for _, e := range out.Errors {
		fmt.Println(" ", e)
	}
	dead, _ := b.Messages("orders.DLT")
	info, _ := retry.ParseDeadLetter(dead[0])
	fmt.Println("dead-lettered:", dead[0].ID, info.Attempts, "attempts:", info.Error)
	// Output:
	// settled: true attempts: 3 err: <nil>
	//   attempt 1: unknown SKU
	//   attempt 2: unknown SKU
	// dead-lettered: order-7 3 attempts: attempt 3: unknown SKU
}
