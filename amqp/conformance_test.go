package amqp_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

// TestConformance runs the shared suite on the real RabbitMQ. Every client
// connects through an in-test TCP proxy, so the restart capability is a
// cut of every connection (what a broker restart or a network failure
// does to a client), fast and deterministic. TestBrokerRestart restarts
// the real broker.
func TestConformance(t *testing.T) {
	url := testenv.NeedAMQP(t)
	px, purl := testenv.NewURLProxy(t, url, "5672")
	opts := []amqp.Option{amqp.WithReconnectBackoff(20*time.Millisecond, 500*time.Millisecond)}
	var mu sync.Mutex
	topics := map[string][]string{} // topic -> queues, deleted at the end
	t.Cleanup(func() {
		for topic, queues := range topics {
			deleteNow(url, topic, queues...)
		}
	})
	messagetest.Run(t, messagetest.Harness{
		NewPublisher: func(t testing.TB) (message.Publisher, error) {
			return amqp.NewPublisher(purl, opts...)
		},
		NewSubscriber: func(t testing.TB, cfg messagetest.SubscriberConfig) (message.Subscriber, error) {
			o := append([]amqp.Option{
				amqp.WithGroup(cfg.Group),
				amqp.WithConcurrency(max(cfg.Concurrency, 1)),
			}, opts...)
			if cfg.InitialBackoff > 0 {
				o = append(o, amqp.WithRedeliveryBackoff(cfg.InitialBackoff, max(cfg.MaxBackoff, cfg.InitialBackoff)))
			}
			if cfg.DrainTimeout > 0 {
				o = append(o, amqp.WithDrainTimeout(cfg.DrainTimeout))
			}
			return amqp.NewSubscriber(purl, o...)
		},
		Prepare: func(t testing.TB, topic string, groups ...string) {
			t.Helper()
			mu.Lock()
			for _, g := range groups {
				topics[topic] = append(topics[topic], topic+"."+g)
			}
			mu.Unlock()
			p, err := amqp.NewPublisher(url)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := p.Declare(ctx, topic, groups...); err != nil {
				t.Fatal(err)
			}
		},
		RestartBroker: func(t testing.TB) { px.Cut() },
		Features: messagetest.Features{
			NewGroupReadsHistory: false,
			Restart:              true,
			InvalidTopics:        []string{"amq.reserved", "has space", "slash/name", strings.Repeat("x", 256), "star*"},
			Timeout:              60 * time.Second,
		},
	})
}
