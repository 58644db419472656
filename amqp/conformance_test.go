package amqp_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/codec/codectest"
	"github.com/ferrymsg/ferry/dedupe/dedupetest"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
	"github.com/ferrymsg/ferry/retry/retrytest"
)

// TestConformance runs the shared suites (the adapter contract, retry and
// dedupe) on the real RabbitMQ, with one harness. Every client
// connects through an in-test TCP proxy, so the restart capability is a
// cut of every connection (what a broker restart or a network failure
// does to a client), fast and deterministic. TestBrokerRestart restarts
// the real broker. Each subscriber also dials through a kill switch of its
// own, so that Kill can take one member off the network, as a crash of its
// process would.
func TestConformance(t *testing.T) {
	url := testenv.NeedAMQP(t)
	px, purl := testenv.NewURLProxy(t, url, "5672")
	kills := new(messagetest.KillSwitches)
	opts := amqp.WithReconnectBackoff(20*time.Millisecond, 500*time.Millisecond)
	var mu sync.Mutex
	topics := map[string][]string{} // topic -> queues, deleted at the end
	t.Cleanup(func() {
		for topic, queues := range topics {
			deleteNow(url, topic, queues...)
		}
	})
	h := messagetest.Harness{
		NewPublisher: func(t testing.TB) (message.Publisher, error) {
			return amqp.NewPublisher(purl, opts)
		},
		NewSubscriber: func(t testing.TB, cfg messagetest.SubscriberConfig) (message.Subscriber, error) {
			o := []amqp.SubscriberOption{
				amqp.WithGroup(cfg.Group),
				amqp.WithConcurrency(max(cfg.Concurrency, 1)),
				opts,
			}
			if cfg.InitialBackoff > 0 {
				o = append(o, amqp.WithRedeliveryBackoff(cfg.InitialBackoff, max(cfg.MaxBackoff, cfg.InitialBackoff)))
			}
			if cfg.DrainTimeout > 0 {
				o = append(o, amqp.WithDrainTimeout(cfg.DrainTimeout))
			}
			// The kill switch wraps amqp091's own dialer (which bounds
			// the handshake with a deadline); connections still go
			// through the shared proxy, so RestartBroker cuts them too.
			// A switch rather than a proxy per subscriber: it starts no
			// goroutines, so the leak test sees none after Close.
			ks := messagetest.NewKillSwitch(func(_ context.Context, network, addr string) (net.Conn, error) {
				return amqp091.DefaultDial(30*time.Second)(network, addr)
			})
			o = append(o, amqp.WithConfig(amqp091.Config{Dial: ks.Dial}))
			s, err := amqp.NewSubscriber(purl, o...)
			if err == nil {
				kills.Add(t, s, ks)
			}
			return s, err
		},
		// Kill closes the member's connection and refuses its reconnects:
		// the broker requeues its unacked deliveries at once and no ack or
		// heartbeat of it arrives any more.
		Kill: kills.Kill,
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
	}
	messagetest.Run(t, h)
	t.Run("retry and dead-lettering", func(t *testing.T) { retrytest.Run(t, h) })
	t.Run("dedupe", func(t *testing.T) { dedupetest.RunMiddleware(t, h) })
	t.Run("codec", func(t *testing.T) { codectest.Run(t, h) })
}
