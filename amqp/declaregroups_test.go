package amqp_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestDeclareGroupsKeepsEarlyMessages: with WithDeclareGroups, messages
// published before any subscriber of the groups started are kept for each
// group (without it they are unroutable), and the subscribers, started
// later with the same topology options, get them all.
func TestDeclareGroupsKeepsEarlyMessages(t *testing.T) {
	url := testenv.NeedAMQP(t)
	ctx := context.Background()

	bare := topicName(t) + ".bare"
	deleteTopology(t, url, bare)
	plain := newPub(t, url)
	if err := plain.Publish(ctx, bare, &message.Message{Payload: []byte("x")}); !errors.Is(err, message.ErrUnroutable) {
		t.Fatalf("Publish without WithDeclareGroups before any subscriber = %v, want ErrUnroutable", err)
	}

	for _, tc := range []struct {
		name string
		opts []amqp.Option
	}{
		{"sharded", nil},
		{"competing quorum", []amqp.Option{amqp.WithCompetingConsumers(), amqp.WithQuorumQueues()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := topicName(t)
			deleteTopology(t, url, topic, topic+".billing", topic+".shipping")
			popts := []amqp.PublisherOption{amqp.WithDeclareGroups("billing"), amqp.WithDeclareGroups("shipping")}
			for _, o := range tc.opts {
				popts = append(popts, o)
			}
			p := newPub(t, url, popts...)
			var ids []string
			for i := range 10 {
				m := &message.Message{Key: string(rune('a' + i)), Payload: []byte("early")}
				if err := p.Publish(ctx, topic, m); err != nil {
					t.Fatalf("Publish %d before any subscriber: %v", i, err)
				}
				ids = append(ids, m.ID)
			}
			for _, g := range []string{"billing", "shipping"} {
				sopts := []amqp.SubscriberOption{amqp.WithGroup(g)}
				for _, o := range tc.opts {
					sopts = append(sopts, o)
				}
				c := newCollector()
				run(t, newSub(t, url, sopts...), topic, c.handle)
				c.waitIDs(t, ids)
			}
		})
	}
}

// TestDeclareGroupsMismatch: a group declared by the publisher with other
// queue arguments than the existing queue fails Publish with
// ErrInvalidConfig at once (no retry loop), and publishes nothing.
func TestDeclareGroupsMismatch(t *testing.T) {
	url := testenv.NeedAMQP(t)
	ctx := context.Background()
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	if err := newPub(t, url, amqp.WithCompetingConsumers()).Declare(ctx, topic, "g"); err != nil {
		t.Fatal(err)
	}
	p := newPub(t, url, amqp.WithDeclareGroups("g"), amqp.WithCompetingConsumers(), amqp.WithQuorumQueues())
	err := p.Publish(ctx, topic, &message.Message{Payload: []byte("x")})
	if !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("Publish with a WithDeclareGroups queue of other arguments = %v, want ErrInvalidConfig", err)
	}
}

func TestDeclareGroupsRejectsEmptyName(t *testing.T) {
	_, err := amqp.NewPublisher("amqp://127.0.0.1:1/", amqp.WithDeclareGroups("a", ""))
	if !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("NewPublisher(WithDeclareGroups(\"a\", \"\")) = %v, want ErrInvalidConfig", err)
	}
}
