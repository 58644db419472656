package reliability_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// FuzzInmemTopic publishes to and subscribes on the in-memory broker with
// arbitrary topic names. inmem follows Kafka's naming rules, so that code
// tested on it runs on Kafka: it must accept exactly what
// kafka.ValidateTopic accepts, reject the rest with
// message.ErrInvalidTopic, and never panic.
func FuzzInmemTopic(f *testing.F) {
	for _, s := range []string{"orders", "a.b_c-D9", "", ".", "..", "has space", "ünïcode", "a/b", "\x00", "\xff", "amq.x", "x:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		b, err := inmem.NewBroker(inmem.WithPartitions(1))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		pub, err := inmem.NewPublisher(b)
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		legal := kafka.ValidateTopic(topic) == nil
		err = pub.Publish(context.Background(), topic, &message.Message{Payload: []byte("x")})
		if legal != (err == nil) {
			t.Fatalf("Publish to %q: %v; Kafka accepts the name: %v", topic, err, legal)
		}
		if err != nil && !errors.Is(err, message.ErrInvalidTopic) {
			t.Fatalf("Publish to %q: %v, does not match message.ErrInvalidTopic", topic, err)
		}
		if legal {
			return
		}
		sub, err := inmem.NewSubscriber(b)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		err = sub.Subscribe(context.Background(), topic, func(context.Context, *message.Message) error { return nil })
		if !errors.Is(err, message.ErrInvalidTopic) {
			t.Fatalf("Subscribe to %q: %v, want message.ErrInvalidTopic", topic, err)
		}
	})
}
