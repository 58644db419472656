package retry_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakePublisher records published messages and fails the first failN
// publishes with errFail.
type fakePublisher struct {
	mu     sync.Mutex
	failN  int
	calls  int
	topics []string
	msgs   []*message.Message
	parts  []int32 // adapter.PartitionFrom of each publish's ctx (-1: none)
}

var errFail = errors.New("fake: publish failed")

func (p *fakePublisher) Publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	if err := adapter.Prepare(topic, msgs); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	part, ok := adapter.PartitionFrom(ctx)
	if !ok {
		part = -1
	}
	p.parts = append(p.parts, part)
	p.calls++
	if p.calls <= p.failN {
		return errFail
	}
	for _, m := range msgs {
		p.topics = append(p.topics, topic)
		p.msgs = append(p.msgs, m)
	}
	return nil
}

func (p *fakePublisher) Close() error { return nil }

func (p *fakePublisher) partitions() []int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int32(nil), p.parts...)
}

func (p *fakePublisher) published() ([]string, []*message.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.topics...), append([]*message.Message(nil), p.msgs...)
}

// fakeSubscriber delivers msgs in order, redelivering a message (Attempt+1)
// until the handler returns nil, then waits for ctx.
type fakeSubscriber struct {
	msgs    []*message.Message
	mu      sync.Mutex
	settled []string
	calls   int
}

func (s *fakeSubscriber) Subscribe(ctx context.Context, topic string, h message.Handler) error {
	for _, m := range s.msgs {
		m.Delivery.Topic = topic
		m.Delivery.Attempt = 1
		for {
			if ctx.Err() != nil {
				return nil
			}
			s.mu.Lock()
			s.calls++
			s.mu.Unlock()
			if err := adapter.Call(ctx, h, m); err == nil {
				s.mu.Lock()
				s.settled = append(s.settled, m.ID)
				s.mu.Unlock()
				break
			}
			m.Delivery.Attempt++
		}
	}
	<-ctx.Done()
	return nil
}

func (s *fakeSubscriber) Close() error { return nil }

func (s *fakeSubscriber) settledIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.settled...)
}

func delivered(topic string, attempt int) *message.Message {
	return &message.Message{
		ID: "id-1", Key: "k", Payload: []byte("p"), Headers: map[string]string{"app": "v"},
		Delivery: message.Delivery{Topic: topic, Group: "g", Attempt: attempt, Partition: 2, Offset: 41},
	}
}

// deliver runs h on msg the way a subscriber's dispatcher does: a
// message.RedeliverAfter error (the middleware's wait between attempts)
// redelivers msg with Attempt one higher; any other result is returned,
// with the waits asked for.
func deliverWaits(ctx context.Context, h message.Handler, msg *message.Message) ([]time.Duration, error) {
	var waits []time.Duration
	for range 10_000 {
		err := adapter.Call(ctx, h, msg)
		d, ok := message.RedeliveryDelay(err)
		if !ok {
			return waits, err
		}
		waits = append(waits, d)
		msg.Delivery.Attempt = max(msg.Delivery.Attempt, 1) + 1
	}
	panic("deliver: 10,000 redeliveries")
}

// deliver is deliverWaits without the waits.
func deliver(ctx context.Context, h message.Handler, msg *message.Message) error {
	_, err := deliverWaits(ctx, h, msg)
	return err
}
