package kafka_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ferrymsg/ferry/kafka"
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

// TestNilSweep calls the exported API with nil, typed nil, nil options,
// nil messages, nil handlers and a nil context (a programmer error by Go
// convention, reported by Publish as message.ErrInvalidConfig), and
// asserts no panic and an error wrapping a ferry sentinel.
func TestNilSweep(t *testing.T) {
	ctx := context.Background()
	brokers := newFake(t)
	var nilOpt kafka.Option
	var nilPubOpt kafka.PublisherOption
	var nilSubOpt kafka.SubscriberOption
	var nilKgo kgo.Opt
	noPanic(t, "NewPublisher(nil brokers)", func() {
		if _, err := kafka.NewPublisher(nil); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("NewPublisher(nil) = %v, want ErrInvalidConfig", err)
		}
	})
	noPanic(t, "NewSubscriber(nil brokers)", func() {
		if _, err := kafka.NewSubscriber(nil); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("NewSubscriber(nil) = %v, want ErrInvalidConfig", err)
		}
	})
	pubOpts := []kafka.PublisherOption{nil, nilOpt, nilPubOpt, kafka.WithClientOptions(nil), kafka.WithClientOptions(nilKgo, nil),
		kafka.WithOptions(nil, nilOpt), kafka.WithOptions(), kafka.WithLogger(nil)}
	noPanic(t, "NewPublisher(nil options)", func() {
		p, err := kafka.NewPublisher(brokers, pubOpts...)
		if err != nil {
			t.Errorf("NewPublisher(nil options) = %v, want them skipped", err)
			return
		}
		defer p.Close()
		if err := p.Publish(ctx, "nils", &message.Message{Payload: []byte("x")}); err != nil {
			t.Errorf("Publish after nil options = %v", err)
		}
		if err := p.Publish(ctx, "nils", &message.Message{}, nil); !errors.Is(err, message.ErrInvalidMessage) {
			t.Errorf("Publish(nil message) = %v, want ErrInvalidMessage", err)
		}
		var nilCtx context.Context // a nil context on purpose
		if err := p.Publish(nilCtx, "nils", &message.Message{}); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("Publish(nil ctx) = %v, want ErrInvalidConfig", err)
		}
		if err := p.Publish(ctx, "nils"); err != nil {
			t.Errorf("Publish(no messages) = %v", err)
		}
	})
	noPanic(t, "zero Publisher", func() {
		var zero kafka.Publisher
		if err := zero.Publish(ctx, "nils", &message.Message{}); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("zero Publisher Publish = %v, want ErrInvalidConfig", err)
		}
	})
	subOpts := []kafka.SubscriberOption{nil, nilOpt, nilSubOpt, kafka.WithClientOptions(nil), kafka.WithOptions(nil), kafka.WithLogger((*slog.Logger)(nil))}
	noPanic(t, "NewSubscriber(nil options)", func() {
		s, err := kafka.NewSubscriber(brokers, subOpts...)
		if err != nil {
			t.Errorf("NewSubscriber(nil options) = %v, want them skipped", err)
			return
		}
		defer s.Close()
		if err := s.Subscribe(ctx, "nils", nil); !errors.Is(err, message.ErrNilHandler) {
			t.Errorf("Subscribe(nil handler) = %v, want ErrNilHandler", err)
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := s.Subscribe(sctx, "", func(context.Context, *message.Message) error { return nil }); !errors.Is(err, message.ErrInvalidTopic) {
			t.Errorf("Subscribe(empty topic) = %v, want ErrInvalidTopic", err)
		}
	})
}
