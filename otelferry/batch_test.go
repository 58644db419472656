package otelferry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
)

// TestBatchConsume: a batch handler call is one process span linked to the
// create span of every message of the batch, with the batch size and, on a
// partial failure, the error status and how many failed.
func TestBatchConsume(t *testing.T) {
	b, err := inmem.NewBroker(inmem.WithPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ip, err := inmem.NewPublisher(b)
	if err != nil {
		t.Fatal(err)
	}
	s := newSDK(t)
	pub, err := s.tel.Publisher(ip)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*message.Message{{Key: "a"}, {Key: "b"}, {Key: "c"}}
	if err := pub.Publish(context.Background(), "orders", msgs...); err != nil {
		t.Fatal(err)
	}
	sub, err := inmem.NewSubscriber(b, inmem.WithGroup("g"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	h := func(_ context.Context, batch []*message.Message) error {
		calls++
		if calls == 1 {
			var be message.BatchError
			be.Fail(1, errors.New("b failed"))
			return be.Err()
		}
		cancel()
		return nil
	}
	if err := sub.SubscribeBatch(ctx, "orders", message.ChainBatch(h, s.tel.BatchMiddleware()),
		message.WithBatchMaxWait(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	creates := map[string]bool{}
	var process []int
	spans := s.spans.GetSpans()
	for i, sp := range spans {
		switch sp.Name {
		case "create orders":
			creates[sp.SpanContext.SpanID().String()] = true
		case "process orders":
			process = append(process, i)
		}
	}
	if len(process) != 2 || len(creates) != 3 {
		t.Fatalf("spans %v, want three create spans and two process spans (the batch, then b again)", names(spans))
	}
	first := spans[process[0]]
	if got := attr(first.Attributes, "messaging.batch.message_count"); got != "3" || len(first.Links) != 3 {
		t.Fatalf("first batch span: batch count %q, %d links, want 3 and 3", got, len(first.Links))
	}
	for _, l := range first.Links {
		if !creates[l.SpanContext.SpanID().String()] {
			t.Errorf("link to %s is not a message's create span", l.SpanContext.SpanID())
		}
	}
	if first.Status.Code.String() != "Error" || attr(first.Attributes, "ferry.batch.failed") != "1" {
		t.Errorf("first batch span: status %v, ferry.batch.failed %q; want Error and 1", first.Status, attr(first.Attributes, "ferry.batch.failed"))
	}
	if second := spans[process[1]]; len(second.Links) != 1 || second.Status.Code.String() == "Error" {
		t.Errorf("second batch span (b again): %d links, status %v; want 1 link and no error", len(second.Links), second.Status)
	}
}
