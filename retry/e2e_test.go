package retry_test

import (
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

// TestEndToEndInmem runs the retry middleware's end-to-end tests on the
// in-memory adapter. The kafka and amqp adapters run messagetest.RunRetry
// from their own conformance tests.
func TestEndToEndInmem(t *testing.T) {
	b := inmem.NewBroker(inmem.WithPartitions(4))
	t.Cleanup(func() { b.Close() })
	messagetest.RunRetry(t, messagetest.Harness{
		NewPublisher: func(testing.TB) (message.Publisher, error) { return inmem.NewPublisher(b), nil },
		NewSubscriber: func(_ testing.TB, c messagetest.SubscriberConfig) (message.Subscriber, error) {
			return inmem.NewSubscriber(b, inmem.WithGroup(c.Group), inmem.WithConcurrency(max(c.Concurrency, 1)),
				inmem.WithRedeliveryBackoff(c.InitialBackoff, max(c.MaxBackoff, c.InitialBackoff)),
				inmem.WithDrainTimeout(c.DrainTimeout))
		},
		Features: messagetest.Features{NewGroupReadsHistory: true, Timeout: 20 * time.Second},
	})
}
