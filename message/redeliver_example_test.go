package message_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
)

// A handler that knows when to try again (a downstream's Retry-After) says
// so with RedeliverAfter: the subscriber delivers the message again after
// that delay, with Attempt one higher, and handles other keys meanwhile.
func ExampleRedeliverAfter() {
	broker, _ := inmem.NewBroker()
	defer broker.Close()
	pub, _ := inmem.NewPublisher(broker)
	sub, _ := inmem.NewSubscriber(broker, inmem.WithGroup("billing"))
	errRateLimited := errors.New("rate limited")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sub.Subscribe(ctx, "orders", func(_ context.Context, m *message.Message) error {
			if m.Delivery.Attempt == 1 {
				fmt.Printf("attempt %d: %v, again in 20ms\n", m.Delivery.Attempt, errRateLimited)
				return message.RedeliverAfter(errRateLimited, 20*time.Millisecond)
			}
			fmt.Printf("attempt %d: handled %s\n", m.Delivery.Attempt, m.Payload)
			cancel()
			return nil
		})
	}()
	_ = pub.Publish(context.Background(), "orders", &message.Message{Key: "order-7", Payload: []byte("order-7")})
	fmt.Println("Subscribe returned", <-done)
	// Output:
	// attempt 1: rate limited, again in 20ms
	// attempt 2: handled order-7
	// Subscribe returned <nil>
}
