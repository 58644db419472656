package chanadapter

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// Publisher appends messages to a Broker's topics.
type Publisher struct {
	b      *Broker
	closed atomic.Bool
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher to b.
func NewPublisher(b *Broker) *Publisher { return &Publisher{b: b} }

// Publish appends msgs to topic (created on first use) and returns once
// they are appended; a batch is appended at once. Topic names follow
// Kafka's rules (adapter.ValidateLogTopic). The broker keeps Payload and
// Headers by reference: do not change them after Publish.
func (p *Publisher) Publish(ctx context.Context, topicName string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return fmt.Errorf("chanadapter: publish %q: %w", topicName, message.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := adapter.ValidateLogTopic(topicName); err != nil {
		return fmt.Errorf("chanadapter: publish: %w", err)
	}
	if err := adapter.Prepare(topicName, msgs); err != nil {
		return fmt.Errorf("chanadapter: publish %q: %w", topicName, err)
	}
	copies := make([]message.Message, len(msgs))
	for i, m := range msgs {
		copies[i] = message.Message{ID: m.ID, Key: m.Key, Payload: m.Payload, Headers: m.Headers, Time: m.Time}
	}
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if p.b.closed {
		return fmt.Errorf("chanadapter: publish %q: %w", topicName, message.ErrClosed)
	}
	t := p.b.topicLocked(topicName)
	for i := range copies {
		part := t.partitionLocked(copies[i].Key)
		t.logs[part] = append(t.logs[part], &copies[i])
	}
	t.wakeLocked()
	return nil
}

// Close makes later Publish calls return message.ErrClosed. It is safe to
// call more than once.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	return nil
}
