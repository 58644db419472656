package dedupe_test

import (
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

// TestEndToEndInmem runs the per-adapter dedupe suite on the in-memory
// adapter; the kafka and amqp adapters call messagetest.RunDedupe from
// their own conformance tests.
func TestEndToEndInmem(t *testing.T) {
	b := inmem.NewBroker(inmem.WithPartitions(4))
	t.Cleanup(func() { _ = b.Close() })
	messagetest.RunDedupe(t, messagetest.Harness{
		NewPublisher: func(testing.TB) (message.Publisher, error) { return inmem.NewPublisher(b), nil },
		NewSubscriber: func(_ testing.TB, c messagetest.SubscriberConfig) (message.Subscriber, error) {
			return inmem.NewSubscriber(b,
				inmem.WithGroup(c.Group),
				inmem.WithConcurrency(max(c.Concurrency, 1)),
				inmem.WithRedeliveryBackoff(max(c.InitialBackoff, time.Millisecond), max(c.MaxBackoff, c.InitialBackoff, time.Millisecond)),
				inmem.WithDrainTimeout(max(c.DrainTimeout, time.Second)))
		},
		Features: messagetest.Features{Timeout: 20 * time.Second},
	})
}
