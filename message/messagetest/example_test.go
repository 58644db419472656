package messagetest_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/message/messagetest"
)

// runRedeliverySuite is a suite written on a Harness with the kit: it runs
// on any adapter that passes messagetest.Run. (TestExampleSuite runs it on
// inmem.)
func runRedeliverySuite(t *testing.T, h messagetest.Harness) {
	t.Run("a redelivered message keeps its headers", func(t *testing.T) {
		e := messagetest.NewEnv(t, h)
		topic, group := e.Topic(), e.Group("work")
		e.Prepare(topic, group) // before publishing: AMQP queues need to exist

		c := messagetest.NewCollector()
		e.Subscribe(e.Subscriber(e.Config(group, 1)), topic, func(_ context.Context, m *message.Message) error {
			c.Record(m)
			if m.Delivery.Attempt == 1 {
				return errors.New("first attempt fails")
			}
			return nil
		})
		m := &message.Message{ID: message.NewID(), Payload: []byte("p"), Headers: map[string]string{"app": "x"}}
		e.Publish(e.Publisher(), topic, m)

		e.Eventually("a second delivery of "+m.ID, func() (bool, string) {
			n := len(c.Received(m.ID))
			return n >= 2, strconv.Itoa(n) + " deliveries"
		})
		for _, got := range c.Received(m.ID) {
			if got.Headers["app"] != "x" {
				t.Errorf("attempt %d: headers %v, want app=x", got.Delivery.Attempt, got.Headers)
			}
		}
	})
}

// An adapter's conformance_test.go runs such a suite beside Run, with the
// same harness:
//
//	func TestConformance(t *testing.T) {
//		h := harness(t)
//		messagetest.Run(t, h)
//		t.Run("redelivery", func(t *testing.T) { runRedeliverySuite(t, h) })
//	}
func ExampleNewEnv() {}
