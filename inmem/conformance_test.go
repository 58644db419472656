package inmem_test

import (
	"testing"
	"time"

	"github.com/ferrymsg/ferry/codec/codectest"
	"github.com/ferrymsg/ferry/dedupe/dedupetest"
	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
	"github.com/ferrymsg/ferry/retry/retrytest"
)

func harness(t *testing.T) messagetest.Harness {
	// Retention keeps settled history so that a new group reads from the
	// start (Features.NewGroupReadsHistory).
	b, err := inmem.NewBroker(inmem.WithPartitions(4), inmem.WithRetention(1<<20, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return messagetest.Harness{
		NewPublisher: func(t testing.TB) (message.Publisher, error) {
			return inmem.NewPublisher(b)
		},
		NewSubscriber: func(t testing.TB, c messagetest.SubscriberConfig) (message.Subscriber, error) {
			opts := []inmem.SubscriberOption{inmem.WithGroup(c.Group)}
			if c.Concurrency > 0 {
				opts = append(opts, inmem.WithConcurrency(c.Concurrency))
			}
			if c.InitialBackoff > 0 {
				opts = append(opts, inmem.WithRedeliveryBackoff(c.InitialBackoff, max(c.MaxBackoff, c.InitialBackoff)))
			}
			if c.DrainTimeout > 0 {
				opts = append(opts, inmem.WithDrainTimeout(c.DrainTimeout))
			}
			return inmem.NewSubscriber(b, opts...)
		},
		Features: messagetest.Features{
			NewGroupReadsHistory: true,
			InvalidTopics:        []string{"has space", "ünïcode", ".", "..", string(make([]byte, 250))},
			Timeout:              20 * time.Second,
		},
	}
}

// TestConformance runs the adapter contract and the middleware suites on
// one harness.
func TestConformance(t *testing.T) {
	h := harness(t)
	messagetest.Run(t, h)
	t.Run("retry and dead-lettering", func(t *testing.T) { retrytest.Run(t, h) })
	t.Run("dedupe", func(t *testing.T) { dedupetest.RunMiddleware(t, h) })
	t.Run("codec", func(t *testing.T) { codectest.Run(t, h) })
}
