package inmem_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
)

// Consume order events in batches, as Spring's batch listener takes a
// List<OrderPlacedEvent>. One event fails: the others settle, and the
// failed one comes back (Attempt 2) together with the later event of its
// customer, in order. (Customers' events come partition by partition; a
// customer's are in publish order.)
func ExampleSubscriber_SubscribeBatch() {
	b, _ := inmem.NewBroker()
	defer b.Close()
	pub, _ := inmem.NewPublisher(b)
	ctx := context.Background()
	for i, customer := range []string{"alice", "bob", "alice", "carol", "alice"} {
		_ = pub.Publish(ctx, "order-events", &message.Message{Key: customer, Payload: fmt.Appendf(nil, "order-%d", i+1)})
	}

	sub, _ := inmem.NewSubscriber(b, inmem.WithGroup("analytics"), inmem.WithRedeliveryBackoff(time.Millisecond, time.Millisecond))
	ctx, cancel := context.WithCancel(ctx)
	settled := 0
	err := sub.SubscribeBatch(ctx, "order-events", func(ctx context.Context, msgs []*message.Message) error {
		var be message.BatchError
		for i, m := range msgs {
			fmt.Printf("%s %s attempt %d\n", m.Key, m.Payload, m.Delivery.Attempt)
			if string(m.Payload) == "order-3" && m.Delivery.Attempt == 1 {
				be.Fail(i, errors.New("warehouse offline"))
			}
		}
		if be.Err() == nil {
			settled += len(msgs)
		} else {
			settled += 3 // all but alice's order-3 and order-5, which come back
		}
		fmt.Println("--")
		if settled == 5 {
			cancel()
		}
		return be.Err()
	}, message.WithBatchMaxMessages(10), message.WithBatchMaxWait(100*time.Millisecond))
	fmt.Println("subscribe returned", err)
	// Output:
	// carol order-4 attempt 1
	// bob order-2 attempt 1
	// alice order-1 attempt 1
	// alice order-3 attempt 1
	// alice order-5 attempt 1
	// --
	// alice order-3 attempt 2
	// alice order-5 attempt 1
	// --
	// subscribe returned <nil>
}
