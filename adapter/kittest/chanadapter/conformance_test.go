package chanadapter_test

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"example.com/chanadapter"
	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/dedupe/dedupetest"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
	"github.com/ferrymsg/ferry/retry/retrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var _ message.BatchSubscriber = (*chanadapter.Subscriber)(nil) // batch.go

func harness(t *testing.T) messagetest.Harness {
	b, err := chanadapter.NewBroker(4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return messagetest.Harness{
		NewPublisher: func(testing.TB) (message.Publisher, error) { return chanadapter.NewPublisher(b), nil },
		NewSubscriber: func(_ testing.TB, c messagetest.SubscriberConfig) (message.Subscriber, error) {
			return chanadapter.NewSubscriber(b, adapter.SubscriberConfig{
				Group:          c.Group,
				Concurrency:    c.Concurrency,
				InitialBackoff: c.InitialBackoff,
				MaxBackoff:     max(c.MaxBackoff, c.InitialBackoff),
				DrainTimeout:   c.DrainTimeout,
			})
		},
		Features: messagetest.Features{
			NewGroupReadsHistory: true,
			InvalidTopics:        []string{"has space", "slash/name", ".", "..", strings.Repeat("x", 250)},
			Timeout:              20 * time.Second,
		},
	}
}

// TestConformance runs ferry's adapter contract and the middleware suites
// on the adapter, as any ferry adapter does.
func TestConformance(t *testing.T) {
	h := harness(t)
	messagetest.Run(t, h)
	t.Run("retry and dead-lettering", func(t *testing.T) { retrytest.Run(t, h) })
	t.Run("dedupe", func(t *testing.T) { dedupetest.RunMiddleware(t, h) })
}
