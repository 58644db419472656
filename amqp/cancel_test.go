package amqp_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ferrymsg/ferry/amqp"
	"github.com/ferrymsg/ferry/internal/testenv"
	"github.com/ferrymsg/ferry/message"
)

// TestPublishCancelledContextPublishesNothing: a Publish whose context is
// already cancelled must return context.Canceled, unwrapped, and publish
// none of its messages.
func TestPublishCancelledContextPublishesNothing(t *testing.T) {
	url := testenv.NeedAMQP(t)
	topic := topicName(t)
	deleteTopology(t, url, topic, topic+".g")
	p := newPub(t, url)
	s := newSub(t, url, amqp.WithGroup("g"))
	ctx := context.Background()
	if err := s.Declare(ctx, topic); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	run(t, s, topic, c.handle)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	const rounds = 20
	var nils int
	for r := range rounds {
		batch := make([]*message.Message, 10)
		for i := range batch {
			batch[i] = &message.Message{ID: fmt.Sprintf("cancelled-%d-%d", r, i), Key: fmt.Sprint(i)}
		}
		err := p.Publish(cancelled, topic, batch...)
		if err == nil {
			nils++
		} else if err != context.Canceled {
			t.Errorf("round %d: Publish with a cancelled ctx = %v, want context.Canceled unwrapped", r, err)
		}
	}
	if nils > 0 {
		t.Errorf("Publish with a cancelled ctx returned nil %d times of %d", nils, rounds)
	}
	// A marker behind them: once it arrived, everything published before
	// it on this channel would have too.
	if err := p.Publish(ctx, topic, &message.Message{ID: "marker"}); err != nil {
		t.Fatal(err)
	}
	got := c.waitIDs(t, []string{"marker"})
	var leaked []string
	for _, m := range got {
		if m.ID != "marker" {
			leaked = append(leaked, m.ID)
		}
	}
	if len(leaked) > 0 {
		t.Errorf("a cancelled ctx published %d messages, e.g. %s", len(leaked), leaked[0])
	}
}
