package connect_test

import (
	"context"
	"fmt"

	"github.com/ferrymsg/ferry/connect"
	"github.com/ferrymsg/ferry/message"
)

// Open a broker from a URL (here the in-memory one; kafka://host:9092 or
// amqp://user:pass@host:5672/ work the same) and consume what it
// publishes.
func Example() {
	ctx := context.Background()
	b, err := connect.Open(ctx, "inmem://?partitions=4&group=billing")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	_ = b.Publisher().Publish(ctx, "invoices", &message.Message{Key: "acme", Payload: []byte("invoice-1")})

	sub, err := b.NewSubscriber(connect.WithConcurrency(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	_ = sub.Subscribe(ctx, "invoices", func(_ context.Context, m *message.Message) error {
		fmt.Printf("%s got %s\n", m.Delivery.Group, m.Payload)
		cancel()
		return nil
	})
	// Output:
	// billing got invoice-1
}

// A bad URL says what is wrong, without the password.
func ExampleOpen_errors() {
	_, err := connect.Open(context.Background(), "amqp://app:s3cret@rabbit:5672/?prefech=64")
	fmt.Println(err)
	// Output:
	// connect: ferry: invalid configuration: amqp://app:xxxxx@rabbit:5672/?prefech=64: unknown parameter "prefech" for amqp://; known: auth_mechanism, cacertfile, certfile, channel_max, competing, concurrency, connection_timeout, declare_groups, dial_timeout, drain_timeout, exchange_kind, frame_max, group, group_heartbeat, heartbeat, key_header, keyfile, max_payload, prefetch, publish_channels, quorum, reconnect_initial, reconnect_max, redelivery_initial, redelivery_max, server_name_indication, shards
}
