package kafka_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
)

// Publish three messages with one key and consume them in order. The
// example runs on franz-go's in-process kfake cluster; pass your brokers'
// addresses instead.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	pub, err := kafka.NewPublisher(brokers)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pub.Close()
	ctx := context.Background()
	err = pub.Publish(ctx, "orders",
		&message.Message{Key: "order-1", Payload: []byte("created")},
		&message.Message{Key: "order-1", Payload: []byte("paid")},
		&message.Message{Key: "order-1", Payload: []byte("shipped")},
	)
	if err != nil {
		fmt.Println(err)
		return
	}

	sub, err := kafka.NewSubscriber(brokers, kafka.WithGroup("billing"), kafka.WithConcurrency(4))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Close()
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	seen := 0
	err = sub.Subscribe(ctx, "orders", func(_ context.Context, m *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf("%s %s attempt %d\n", m.Key, m.Payload, m.Delivery.Attempt)
		if seen++; seen == 3 {
			cancel() // Subscribe drains, commits and returns nil
		}
		return nil
	})
	fmt.Println("subscribe returned", err)
	// Output:
	// order-1 created attempt 1
	// order-1 paid attempt 1
	// order-1 shipped attempt 1
	// subscribe returned <nil>
}
