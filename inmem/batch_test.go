package inmem

import (
	"context"
	"errors"
	"testing"

	"github.com/ferrymsg/ferry/message"
)

// TestSubscribeBatchBadInput: a nil handler, a bad batch option and a nil
// context are errors naming what is wrong, not panics; nil options are
// skipped.
func TestSubscribeBatchBadInput(t *testing.T) {
	b := newBroker(t)
	defer b.Close()
	s, err := NewSubscriber(b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := func(context.Context, []*message.Message) error { return nil }
	if err := s.SubscribeBatch(context.Background(), "t", nil); !errors.Is(err, message.ErrNilHandler) {
		t.Errorf("nil handler: %v, want ErrNilHandler", err)
	}
	for _, o := range []message.BatchOption{message.WithBatchMaxMessages(0), message.WithBatchMaxBytes(-1), message.WithBatchMaxWait(-1)} {
		if err := s.SubscribeBatch(context.Background(), "t", h, nil, o); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("bad option: %v, want ErrInvalidConfig", err)
		}
	}
	var nilCtx context.Context
	if err := s.SubscribeBatch(nilCtx, "t", h); !errors.Is(err, message.ErrInvalidConfig) {
		t.Errorf("nil ctx: %v, want ErrInvalidConfig", err)
	}
	if err := s.SubscribeBatch(context.Background(), "bad topic", h); !errors.Is(err, message.ErrInvalidTopic) {
		t.Errorf("bad topic: %v, want ErrInvalidTopic", err)
	}
}
