package amqp_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestPublishOversizedHeadersFailsThatMessage: a message whose header
// table does not fit in one frame (a 1 MiB header value, the broker's
// frame_max is 128 KiB) would make RabbitMQ close the connection. It must
// fail alone, named, with message.ErrMessageTooLarge, while the rest of
// its batch is published, and the connection must stay up.
func TestPublishOversizedHeadersFailsThatMessage(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	st := newStates()
	p := newPub(t, url, fastReconnect, amqp.WithOnStateChange(st.record))
	s := newSub(t, url, amqp.WithGroup("g"))
	ctx := context.Background()
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	run(t, s, topic, c.handle)

	batch := []*message.Message{
		{ID: "before"},
		{ID: "huge-headers", Headers: map[string]string{"big": strings.Repeat("x", 1<<20)}},
		{ID: "after"},
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := p.Publish(pctx, topic, batch...)
	var pe *message.PublishError
	if !errors.As(err, &pe) {
		t.Fatalf("Publish = %v, want a *message.PublishError for the message with huge headers", err)
	}
	if len(pe.Failed) != 1 || pe.Failed[0].Index != 1 {
		t.Fatalf("failed %+v, want only #1", pe.Failed)
	}
	if !errors.Is(err, message.ErrMessageTooLarge) || !strings.Contains(err.Error(), "huge-headers") {
		t.Errorf("error %v: want ErrMessageTooLarge naming the message", err)
	}
	t.Logf("Publish: %v", err)
	c.waitIDs(t, []string{"before", "after"})
	if n := st.count(amqp.StateDisconnected); n > 0 {
		t.Errorf("the publisher lost its connection %d times", n)
	}
}

// TestPublishOverBrokerMaxMessageSize publishes a payload one byte over
// RabbitMQ 3.x's default max_message_size (128 MiB; 4.x's is 16 MiB),
// with WithMaxPayload raised so that ferry lets it through: the broker
// closes the channel, and that message must fail with
// message.ErrMessageTooLarge while the rest of its batch is published;
// then a second such payload fails before anything is sent.
func TestPublishOverBrokerMaxMessageSize(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	p := newPub(t, url, amqp.WithMaxPayload(512<<20))
	s := newSub(t, url, amqp.WithGroup("g"))
	ctx := context.Background()
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	run(t, s, topic, c.handle)
	big := make([]byte, 128<<20+1)
	pctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err := p.Publish(pctx, topic, &message.Message{ID: "before"}, &message.Message{ID: "big", Payload: big}, &message.Message{ID: "after"})
	var pe *message.PublishError
	if !errors.As(err, &pe) || len(pe.Failed) != 1 || pe.Failed[0].Index != 1 {
		t.Fatalf("Publish = %v, want a PublishError for #1 only", err)
	}
	if !errors.Is(err, message.ErrMessageTooLarge) {
		t.Errorf("Publish = %v, want ErrMessageTooLarge", err)
	}
	t.Logf("Publish: %v", err)
	c.waitIDs(t, []string{"before", "after"})
	err = p.Publish(pctx, topic, &message.Message{ID: "small"}, &message.Message{ID: "big2", Payload: big})
	if !errors.Is(err, message.ErrMessageTooLarge) || errors.As(err, &pe) {
		t.Errorf("second Publish = %v, want ErrMessageTooLarge before anything is sent", err)
	}
	t.Logf("second Publish: %v", err)
}
