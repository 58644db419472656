package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ferrymsg/ferry/kafka"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// A share group (Kafka 4.2+, KIP-932): members take records of any
// partition, each acknowledged on its own. A handler error releases the
// record, and the broker delivers it again with its delivery count as
// Delivery.Attempt; a permanent error rejects it for good. The example
// runs on franz-go's in-process kfake cluster.
func ExampleWithShareGroup() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "jobs"))
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
	err = pub.Publish(ctx, "jobs",
		&message.Message{ID: "resize-1"}, &message.Message{ID: "resize-2"}, &message.Message{ID: "corrupt"})
	if err != nil {
		fmt.Println(err)
		return
	}

	sub, err := kafka.NewSubscriber(brokers, kafka.WithShareGroup("workers"), kafka.WithConcurrency(4))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sub.Close()
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var log []string
	done := map[string]bool{}
	err = sub.Subscribe(ctx, "jobs", func(_ context.Context, m *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, fmt.Sprintf("%s attempt %d", m.ID, m.Delivery.Attempt))
		var herr error
		switch {
		case m.ID == "corrupt":
			herr = retry.Permanent(errors.New("cannot decode")) // rejected: never delivered again
		case m.ID == "resize-2" && m.Delivery.Attempt == 1:
			herr = errors.New("storage busy") // released: delivered again
		}
		if herr == nil || m.ID == "corrupt" {
			done[m.ID] = true
		}
		if len(done) == 3 {
			cancel()
		}
		return herr
	})
	slices.Sort(log)
	for _, l := range log {
		fmt.Println(l)
	}
	fmt.Println("subscribe returned", err)
	// Output:
	// corrupt attempt 1
	// resize-1 attempt 1
	// resize-2 attempt 1
	// resize-2 attempt 2
	// subscribe returned <nil>
}
