package dedupe_test

import (
	"context"
	"fmt"

	"github.com/ferrymsg/ferry/dedupe"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
)

// A message published three times with one ID (a producer retrying after a
// lost acknowledgement) is handled once.
func Example() {
	broker, err := inmem.NewBroker(inmem.WithPartitions(1)) // one partition: a deterministic order
	if err != nil {
		panic(err)
	}
	defer broker.Close()
	pub, err := inmem.NewPublisher(broker)
	if err != nil {
		panic(err)
	}
	sub, err := inmem.NewSubscriber(broker, inmem.WithGroup("billing"))
	if err != nil {
		panic(err)
	}

	store, err := dedupe.NewMemoryStore()
	if err != nil {
		panic(err)
	}
	defer store.Close()
	dd, err := dedupe.New(store)
	if err != nil {
		panic(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	settled := 0
	// Count deliveries around the middleware to know when to stop.
	counter := func(next message.Handler) message.Handler {
		return func(ctx context.Context, m *message.Message) error {
			err := next(ctx, m)
			if settled++; settled == 4 {
				cancel()
			}
			return err
		}
	}
	handle := func(ctx context.Context, m *message.Message) error {
		fmt.Printf("charging %s: %s\n", m.ID, m.Payload)
		return nil
	}

	for _, id := range []string{"order-1", "order-1", "order-1", "order-2"} {
		if err := pub.Publish(ctx, "orders", &message.Message{ID: id, Payload: []byte("10 EUR")}); err != nil {
			panic(err)
		}
	}
	if err := sub.Subscribe(ctx, "orders", message.Chain(handle, counter, dd)); err != nil {
		panic(err)
	}
	fmt.Println("deliveries:", settled)
	// Output:
	// charging order-1: 10 EUR
	// charging order-2: 10 EUR
	// deliveries: 4
}
