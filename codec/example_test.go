package codec_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

type OrderPlaced struct {
	OrderID  string `json:"orderId"`
	Customer string `json:"customer"`
	Total    int    `json:"totalCents"`
}

// A typed publisher and a typed handler: no json.Marshal or Unmarshal in
// the service code. An undecodable message goes to the dead-letter topic
// after one attempt, unchanged, with the decode error in its headers.
func Example() {
	ctx := context.Background()
	b, _ := inmem.NewBroker()
	defer b.Close()
	raw, _ := inmem.NewPublisher(b)

	orders := codec.JSON[OrderPlaced]()
	pub, err := codec.NewPublisher(raw, orders)
	if err != nil {
		panic(err)
	}
	_ = pub.Publish(ctx, "orders", "alice", OrderPlaced{OrderID: "o-1", Customer: "alice", Total: 1250})
	_ = raw.Publish(ctx, "orders", &message.Message{ID: "garbage-1", Key: "alice", Payload: []byte("<order/>")})
	_ = pub.Publish(ctx, "orders", "alice", OrderPlaced{OrderID: "o-2", Customer: "alice", Total: 990})

	dlq, _ := retry.New(retry.WithDeadLetter(raw)) // to orders.DLT
	sub, _ := inmem.NewSubscriber(b, inmem.WithGroup("billing"))
	ctx, cancel := context.WithCancel(ctx)
	seen := 0
	h := codec.Handler(orders, func(ctx context.Context, o OrderPlaced, m *message.Message) error {
		fmt.Printf("bill %s to %s: %d cents\n", o.OrderID, o.Customer, o.Total)
		if seen++; seen == 2 {
			cancel()
		}
		return nil
	})
	_ = sub.Subscribe(ctx, "orders", message.Chain(h, dlq))

	dead, _ := b.Messages("orders.DLT")
	for _, m := range dead {
		fmt.Printf("dead letter %s %q after %s attempt: %s\n", m.ID, m.Payload, m.Headers[retry.HeaderAttempts], m.Headers[retry.HeaderErrorType])
	}
	// Output:
	// bill o-1 to alice: 1250 cents
	// bill o-2 to alice: 990 cents
	// dead letter garbage-1 "<order/>" after 1 attempt: *codec.DecodeError
}

// Decode is the typed helper's first step, for handlers that pick a codec
// themselves.
func ExampleDecode() {
	m := &message.Message{ID: "m-1", Payload: []byte(`{"orderId":"o-1"`), Delivery: message.Delivery{Topic: "orders"}}
	_, err := codec.Decode(codec.JSON[OrderPlaced](), m)
	var de *codec.DecodeError
	fmt.Println(errors.As(err, &de), retry.IsPermanent(err))
	fmt.Println(err)
	// Output:
	// true true
	// codec: message "m-1" on "orders" is not application/json: unexpected end of JSON input
}
