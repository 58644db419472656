package amqp_test

import (
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/delaytest"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestDelayedTiers runs the delayed-retry suite (internal/delaytest) on
// the real RabbitMQ: TTL + dead-letter-exchange wait queues per tier,
// classic and quorum queues, and a broker restart while a message waits
// in its wait queue.
func TestDelayedTiers(t *testing.T) {
	url := testenv.NeedAMQP(t)
	for _, q := range []struct {
		name    string
		opts    []amqp.Option
		restart bool
	}{
		{"classic", nil, true},
		{"quorum", []amqp.Option{amqp.WithQuorumQueues()}, false},
	} {
		t.Run(q.name, func(t *testing.T) {
			opt := amqp.WithOptions(append([]amqp.Option{amqp.WithShards(4)}, q.opts...)...)
			h := delaytest.Harness{
				NewPublisher: func(t testing.TB) message.Publisher { return newPub(t, url, opt, fastReconnect) },
				NewSubscriber: func(t testing.TB, group string) message.Subscriber {
					return newSub(t, url, opt, fastReconnect, amqp.WithGroup(group), amqp.WithConcurrency(4),
						amqp.WithRedeliveryBackoff(5*time.Millisecond, 50*time.Millisecond))
				},
				Topic: func(t testing.TB) string {
					topic := topicName(t)
					deleteTopology(t, url, topic, topic+".g", topic+".g-retry-200", topic+".g-retry-400", topic+".g-retry-1000")
					deleteTopology(t, url, topic+".DLT", topic+".DLT.dlt")
					for _, x := range []string{"-retry-200", "-retry-400", "-retry-1000"} {
						deleteTopology(t, url, topic+x)
					}
					return topic
				},
				Prepare: func(t testing.TB, topic string, groups ...string) {
					p := newPub(t, url, opt)
					if err := p.Declare(t.Context(), topic, groups...); err != nil {
						t.Fatal(err)
					}
				},
				Wait: 30 * time.Second,
			}
			if q.restart {
				h.Restart = func(t testing.TB) { testenv.RestartService(t, "rabbitmq") }
			}
			delaytest.Run(t, h)
		})
	}
}
