package inmem

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ferrymsg/ferry/adapter"
	"github.com/ferrymsg/ferry/message"
)

// Publisher appends messages to a Broker's topics. Create it with
// NewPublisher.
type Publisher struct {
	b      *Broker
	closed atomic.Bool
	obs    message.Observer // WithObserver; nil without
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher to b. It fails with an error wrapping
// message.ErrInvalidConfig when b is nil or an option is bad. Its one
// option is WithObserver; nil options are skipped.
func NewPublisher(b *Broker, opts ...PublisherOption) (*Publisher, error) {
	if b == nil {
		return nil, fmt.Errorf("inmem: %w: nil broker", message.ErrInvalidConfig)
	}
	c, err := newPubConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Publisher{b: b, obs: message.Observers(c.observers...)}, nil
}

// Publish appends msgs to topic, which is created on first use, and
// returns once they are appended: every existing group will receive them.
// It fills in ID and Time where they are empty. The broker keeps the
// messages' Payload and Headers by reference: do not modify them after
// Publish. Topic names follow Kafka's rules (1 to 249 of [a-zA-Z0-9._-]) so
// that code tested on inmem runs on Kafka. Publish is safe for concurrent
// use; a batch is appended atomically. After Close it returns
// message.ErrClosed. An already cancelled ctx publishes nothing and returns
// ctx.Err(). A nil ctx (a programmer error by Go convention) and a
// Publisher not made by NewPublisher get an error wrapping
// message.ErrInvalidConfig, not a panic.
func (p *Publisher) Publish(ctx context.Context, topicName string, msgs ...*message.Message) (err error) {
	if ctx == nil {
		return fmt.Errorf("inmem: publish %q: %w: nil context", topicName, message.ErrInvalidConfig)
	}
	if o := p.obs; o != nil {
		start := time.Now()
		defer func() { observePublish(ctx, o, topicName, msgs, start, err) }()
	}
	if p.b == nil {
		return fmt.Errorf("inmem: publish %q: %w: the Publisher was not made by NewPublisher", topicName, message.ErrInvalidConfig)
	}
	if p.closed.Load() || p.b.isClosed() {
		return fmt.Errorf("inmem: publish %q: %w", topicName, message.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := adapter.ValidateLogTopic(topicName); err != nil {
		return fmt.Errorf("inmem: publish: %w", err)
	}
	if err := adapter.Prepare(topicName, msgs); err != nil {
		return fmt.Errorf("inmem: publish %q: %w", topicName, err)
	}
	t, err := p.b.topic(topicName)
	if err != nil {
		return fmt.Errorf("inmem: publish %q: %w", topicName, err)
	}
	t.mu.Lock()
	for _, m := range msgs {
		part := t.parts[t.partitionFor(m.Key)]
		t.seq++
		part.push(entry{id: m.ID, key: m.Key, payload: m.Payload, headers: m.Headers, time: m.Time, seq: t.seq})
	}
	t.wakeLocked()
	t.mu.Unlock()
	return nil
}

// Close marks the publisher closed; later Publish calls return
// message.ErrClosed. It does not close the Broker. Safe to call more than
// once.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	return nil
}
