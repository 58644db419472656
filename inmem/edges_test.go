package inmem_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
)

func noPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", name, r)
		}
	}()
	f()
}

// TestPublishCancelledContext: a cancelled context publishes nothing and
// returns context.Canceled as is, for a new topic and an existing one.
func TestPublishCancelledContext(t *testing.T) {
	b, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p, _ := inmem.NewPublisher(b)
	if err := p.Publish(context.Background(), "known", &message.Message{Payload: []byte("warm")}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"known", "fresh"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		msgs := []*message.Message{{Payload: []byte("1")}, {Key: "k", Payload: []byte("2")}}
		if err := p.Publish(ctx, topic, msgs...); err != context.Canceled {
			t.Errorf("Publish(%s, cancelled) = %v, want context.Canceled", topic, err)
		}
		if msgs[0].ID != "" {
			t.Errorf("Publish(%s, cancelled) changed the messages (ID %q)", topic, msgs[0].ID)
		}
	}
	// Only the warm-up message is there.
	s, _ := inmem.NewSubscriber(b, inmem.WithGroup("count"))
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var n int
	for _, topic := range []string{"known", "fresh"} {
		_ = s.Subscribe(ctx, topic, func(context.Context, *message.Message) error { n++; return nil })
	}
	if n != 1 {
		t.Errorf("%d messages delivered, want 1 (the warm-up)", n)
	}
}

// TestNilSweep calls the exported API with nil, typed nil, nil options,
// nil messages, nil handlers and a nil context, and asserts no panic and
// an error wrapping a ferry sentinel. A nil context is a programmer error
// (Go convention); Publish reports it as message.ErrInvalidConfig rather
// than panicking.
func TestNilSweep(t *testing.T) {
	ctx := context.Background()
	noPanic(t, "NewBroker(nil)", func() {
		b, err := inmem.NewBroker(nil)
		if err != nil {
			t.Errorf("NewBroker(nil) = %v, want nil options skipped", err)
			return
		}
		b.Close()
	})
	noPanic(t, "NewPublisher(nil)", func() {
		if _, err := inmem.NewPublisher(nil); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("NewPublisher(nil) = %v, want ErrInvalidConfig", err)
		}
	})
	noPanic(t, "NewSubscriber(nil)", func() {
		if _, err := inmem.NewSubscriber(nil); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("NewSubscriber(nil) = %v, want ErrInvalidConfig", err)
		}
	})
	b, err := inmem.NewBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	noPanic(t, "NewSubscriber(b, nil)", func() {
		s, err := inmem.NewSubscriber(b, nil)
		if err != nil {
			t.Errorf("NewSubscriber(b, nil) = %v, want nil options skipped", err)
			return
		}
		s.Close()
	})
	p, _ := inmem.NewPublisher(b)
	noPanic(t, "Publish(nil message)", func() {
		if err := p.Publish(ctx, "t", &message.Message{}, nil); !errors.Is(err, message.ErrInvalidMessage) {
			t.Errorf("Publish(nil message) = %v, want ErrInvalidMessage", err)
		}
	})
	noPanic(t, "Publish(nil ctx)", func() {
		var nilCtx context.Context // a nil context on purpose
		if err := p.Publish(nilCtx, "t", &message.Message{}); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("Publish(nil ctx) = %v, want ErrInvalidConfig", err)
		}
	})
	noPanic(t, "Publish(no messages)", func() {
		if err := p.Publish(ctx, "t"); err != nil {
			t.Errorf("Publish(no messages) = %v", err)
		}
	})
	noPanic(t, "zero Publisher", func() {
		var zero inmem.Publisher
		if err := zero.Publish(ctx, "t", &message.Message{}); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("zero Publisher Publish = %v, want ErrInvalidConfig", err)
		}
	})
	s, _ := inmem.NewSubscriber(b)
	defer s.Close()
	noPanic(t, "Subscribe(nil handler)", func() {
		if err := s.Subscribe(ctx, "t", nil); !errors.Is(err, message.ErrNilHandler) {
			t.Errorf("Subscribe(nil handler) = %v, want ErrNilHandler", err)
		}
	})
	var nh message.Handler
	noPanic(t, "Subscribe(typed nil handler)", func() {
		if err := s.Subscribe(ctx, "t", nh); !errors.Is(err, message.ErrNilHandler) {
			t.Errorf("Subscribe(nil Handler var) = %v, want ErrNilHandler", err)
		}
	})
}
