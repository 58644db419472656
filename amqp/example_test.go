package amqp_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/message"
)

// Examples need a running RabbitMQ, and an example cannot skip when there
// is none, so they are compiled but not run (no "// Output:"). The same
// flows run as tests against the real broker under `make test`
// (TestPublishSubscribeRoundTrip, TestWildcardBindings,
// TestUnroutablePublishFails).

// A subscriber group bound to "order.*" keys of the "shop" topic, and a
// publisher whose first messages reach it because the queue is declared
// ahead of publishing.
func Example() {
	const url = "amqp://guest:guest@127.0.0.1:5672/"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Options both sides take: the topology (Publisher.Declare declares it
	// as the Subscriber does) and the connection's.
	shared := amqp.WithOptions(
		amqp.WithBindingKey("order.*"),
		amqp.WithOnStateChange(func(sc amqp.StateChange) {
			log.Printf("rabbitmq %s: %v (%s)", sc.State, sc.Err, sc.URL) // password redacted
		}),
	)
	sub, err := amqp.NewSubscriber(url, shared, amqp.WithGroup("billing"), amqp.WithConcurrency(8))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Declare(ctx, "shop"); err != nil {
		log.Fatal(err)
	}

	pub, err := amqp.NewPublisher(url, shared)
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	err = pub.Publish(ctx, "shop",
		&message.Message{Key: "order.created", Payload: []byte(`{"id":1}`)},
		&message.Message{Key: "order.paid", Payload: []byte(`{"id":1}`)},
	)
	if err != nil {
		log.Fatal(err)
	}

	done := make(chan struct{})
	n := 0
	go func() {
		// Returns nil after cancel(), once in-flight handlers finished.
		_ = sub.Subscribe(ctx, "shop", func(ctx context.Context, m *message.Message) error {
			fmt.Println(m.Key, string(m.Payload))
			if n++; n == 2 {
				close(done)
			}
			return nil // ack; an error redelivers after a backoff
		})
	}()
	<-done
}

// An unroutable message is an error, not a silent drop.
func ExamplePublisher_Publish_unroutable() {
	pub, err := amqp.NewPublisher("amqp://guest:guest@127.0.0.1:5672/",
		amqp.WithLogger(slog.Default()))
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = pub.Publish(ctx, "nobody-listens", &message.Message{Payload: []byte("x")})
	var pe *message.PublishError
	if errors.Is(err, message.ErrUnroutable) && errors.As(err, &pe) {
		fmt.Println("unroutable:", len(pe.Messages()), "message(s) to retry once a queue is bound")
	}
}
