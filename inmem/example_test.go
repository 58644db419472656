package inmem_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
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
