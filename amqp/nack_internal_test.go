package amqp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestNackRetiresChannel: a message the broker nacks (here a queue at its
// x-max-length with x-overflow reject-publish) fails with ErrNacked, and
// the channel it was published on is closed, so that the next Publish
// goes out on a new channel (RabbitMQ 3.10 can keep nacking every publish
// of a channel after a quorum queue's leader node died; see the comment
// in publishRound). Messages keep flowing on the new channel once the
// queue has room.
func TestNackRetiresChannel(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := fmt.Sprintf("ferrytest.nackretire.%08x", rand.Uint32())
	queue := topic + ".g"
	t.Cleanup(func() {
		if c, err := amqp091.Dial(url); err == nil {
			if ch, err := c.Channel(); err == nil {
				_, _ = ch.QueueDelete(queue, false, false, false)
				_ = ch.ExchangeDelete(topic, false, false)
			}
			c.Close()
		}
	})
	p, err := NewPublisher(url, WithCompetingConsumers(), WithDeclareGroups("g"),
		WithQueueArgs(amqp091.Table{"x-max-length": int64(1), "x-overflow": "reject-publish"}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, topic, &message.Message{ID: "fits"}); err != nil {
		t.Fatal(err)
	}
	first := p.slots[0].pc.Load()
	err = p.Publish(ctx, topic, &message.Message{ID: "over the limit"})
	if !errors.Is(err, ErrNacked) {
		t.Fatalf("publish to a full reject-publish queue: %v, want ErrNacked", err)
	}
	select {
	case <-first.dead:
	case <-time.After(10 * time.Second):
		t.Fatal("the channel that got the nack is still open 10s later")
	}
	// Room again: the next Publish succeeds, on another channel.
	c, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueuePurge(queue, false); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, topic, &message.Message{ID: "after"}); err != nil {
		t.Fatalf("publish after the nack: %v", err)
	}
	if p.slots[0].pc.Load() == first {
		t.Error("the publish after the nack used the channel that got it")
	}
}
