package inmem_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/internal/delaytest"
	"github.com/ferrymsg/ferry/message"
)

var delayTopics atomic.Int64

func TestDelayedTiers(t *testing.T) {
	b, err := inmem.NewBroker(inmem.WithPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	delaytest.Run(t, delaytest.Harness{
		NewPublisher: func(t testing.TB) message.Publisher {
			p, err := inmem.NewPublisher(b)
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		NewSubscriber: func(t testing.TB, group string) message.Subscriber {
			s, err := inmem.NewSubscriber(b, inmem.WithGroup(group), inmem.WithConcurrency(4),
				inmem.WithRedeliveryBackoff(5*time.Millisecond, 50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Topic:     func(testing.TB) string { return fmt.Sprintf("delay-%d", delayTopics.Add(1)) },
		Positions: true,
		TierTopic: true,
		Wait:      10 * time.Second,
	})
}
