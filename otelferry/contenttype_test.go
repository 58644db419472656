package otelferry_test

import (
	"context"
	"sync"
	"testing"

	"github.com/ferrymsg/ferry/codec"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/otelferry"
)

// recordingPublisher keeps what it was asked to publish.
type recordingPublisher struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (p *recordingPublisher) Publish(_ context.Context, _ string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *recordingPublisher) Close() error { return nil }

// ownHeaderPublisher carries the content type in a header of its own, as
// the AMQP adapter does (its content-type property).
type ownHeaderPublisher struct{ recordingPublisher }

func (*ownHeaderPublisher) ContentTypeHeader() string { return "x-own-content-type" }

// A typed publisher wrapped around the tracing wrapper puts the content
// type where the wrapped publisher says it goes (AMQP: content_type), and
// in codec's default header when the wrapped one has no say.
func TestPublisherKeepsContentTypeHeader(t *testing.T) {
	tel, err := otelferry.New()
	if err != nil {
		t.Fatal(err)
	}
	type order struct{ ID int }
	own := &ownHeaderPublisher{}
	plain := &recordingPublisher{}
	cases := []struct {
		name   string
		rec    *recordingPublisher
		pub    message.Publisher
		header string
	}{
		{"own header", &own.recordingPublisher, own, "x-own-content-type"},
		{"no header of its own", plain, plain, codec.HeaderContentType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wrapped, err := tel.Publisher(c.pub)
			if err != nil {
				t.Fatal(err)
			}
			typed, err := codec.NewPublisher(wrapped, codec.JSON[order]())
			if err != nil {
				t.Fatal(err)
			}
			if err := typed.Publish(context.Background(), "orders", "k", order{ID: 1}); err != nil {
				t.Fatal(err)
			}
			c.rec.mu.Lock()
			defer c.rec.mu.Unlock()
			if len(c.rec.msgs) != 1 {
				t.Fatalf("published %d messages, want 1", len(c.rec.msgs))
			}
			if got := c.rec.msgs[0].Headers[c.header]; got != "application/json" {
				t.Errorf("header %q = %q, want application/json (headers %v)", c.header, got, c.rec.msgs[0].Headers)
			}
		})
	}
}
