package amqp

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ferrymsg/ferry/adapter/dispatch"
)

// TestBatchAcks: a batch's settled deliveries are acked with one multiple
// ack where they are contiguous with everything acked before on their
// channel, one by one otherwise; a tag is never acked twice.
func TestBatchAcks(t *testing.T) {
	var sent []string
	acked := map[ref]bool{}
	a := &batchAcker{chans: make(map[*consumer]*tagTrack), send: func(c *consumer, tag uint64, multiple bool) {
		sent = append(sent, fmt.Sprintf("%d%s", tag, map[bool]string{true: "m", false: ""}[multiple]))
		if acked[ref{c, tag}] {
			t.Errorf("tag %d acked twice", tag)
		}
		acked[ref{c, tag}] = true
	}}
	c1, c2 := &consumer{}, &consumer{}
	batch := func(c *consumer, tags ...uint64) []*dispatch.Delivery {
		var dls []*dispatch.Delivery
		for _, tag := range tags {
			dls = append(dls, &dispatch.Delivery{Ref: &ref{c: c, tag: tag}})
		}
		return dls
	}
	for _, step := range []struct {
		dls  []*dispatch.Delivery
		want string
	}{
		{batch(c1, 3, 1, 2), "[3m]"},                          // contiguous from the first tag: one multiple ack
		{batch(c1, 5, 6), "[5 6]"},                            // 4 outstanding: one by one
		{batch(c1, 4), "[4m]"},                                // closes the gap: acks 4 (5 and 6 were acked)
		{append(batch(c1, 7), batch(c2, 2, 1)...), "[2m 7m]"}, // per channel (sorted: the channels go in any order)
		{batch(c2, 4), "[4]"},
	} {
		sent = nil
		a.ack(step.dls)
		slices.Sort(sent)
		if got := fmt.Sprint(sent); got != step.want {
			t.Fatalf("acks %s, want %s", got, step.want)
		}
	}
}
