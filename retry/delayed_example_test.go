package retry_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// A downstream is down: the message leaves its topic after two quick
// in-process attempts, waits in the tier orders-retry-50 (Spring's
// naming), and comes back with Delivery.Tier 1 and its third attempt;
// meanwhile the topic goes on with other messages.
func ExamplePolicy_Subscribe() {
	b, _ := inmem.NewBroker()
	defer b.Close()
	pub, _ := inmem.NewPublisher(b)
	sub, _ := inmem.NewSubscriber(b, inmem.WithGroup("billing"))

	p, err := retry.NewPolicy(
		retry.WithMaxAttempts(2),
		retry.WithConstantBackoff(time.Millisecond),
		retry.WithDelayedRetry(pub, 50*time.Millisecond), // then orders.DLT
	)
	if err != nil {
		panic(err)
	}
	fmt.Println("tiers:", p.TierTopics("orders"))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	handle := func(_ context.Context, msg *message.Message) error {
		d := msg.Delivery
		if d.Tier == 0 {
			fmt.Printf("%s failed on %s\n", msg.ID, d.Topic)
			return errors.New("payment service down")
		}
		fmt.Printf("%s handled from %s (tier %d, attempt %d)\n", msg.ID, d.Topic, d.Tier, d.Attempt)
		close(done)
		return nil
	}
	ready := make(chan struct{})
	stopped := make(chan error, 1)
	go func() {
		stopped <- p.Subscribe(message.WithReady(ctx, func() { close(ready) }), sub, "orders", message.Chain(handle, p.Middleware()))
	}()
	<-ready
	_ = pub.Publish(ctx, "orders", &message.Message{ID: "o-1", Key: "acct-1"})
	<-done
	cancel()
	fmt.Println("stopped:", <-stopped)

	// Output:
	// tiers: [orders-retry-50]
	// o-1 failed on orders
	// o-1 failed on orders
	// o-1 handled from orders-retry-50 (tier 1, attempt 3)
	// stopped: <nil>
}
