package retry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ferrymsg/ferry/inmem"
	"github.com/ferrymsg/ferry/message"
	"github.com/ferrymsg/ferry/retry"
)

// noPanic runs f and fails the test if it panics.
func noPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panicked: %v", name, r)
		}
	}()
	f()
}

// TestTypedNilDeadLetter: a typed-nil publisher (a nil *inmem.Publisher in
// a message.Publisher) used to be accepted; every dead-letter then
// panicked inside the middleware and the message was redelivered forever.
func TestTypedNilDeadLetter(t *testing.T) {
	var p *inmem.Publisher
	_, err := retry.New(retry.WithDeadLetter(p))
	if !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("retry.New(WithDeadLetter(typed nil)) = %v, want ErrInvalidConfig", err)
	}
	var nilIface message.Publisher
	if _, err := retry.New(retry.WithDeadLetter(nilIface)); !errors.Is(err, message.ErrInvalidConfig) {
		t.Fatalf("retry.New(WithDeadLetter(nil)) = %v, want ErrInvalidConfig", err)
	}
}

// TestNilSweep calls every exported function of the package with nil,
// typed nil, nil options, nil messages, nil handlers and a nil context,
// and asserts that none panics. A nil context is a programmer error (Go
// convention); ferry does not promise an error for it, only no panic in
// the middleware's own code for the other nil inputs.
func TestNilSweep(t *testing.T) {
	ctx := context.Background()
	noPanic(t, "New(zero Option)", func() {
		if _, err := retry.New(retry.Option{}); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("New(zero Option) = %v, want ErrInvalidConfig", err)
		}
	})
	for name, o := range map[string]retry.Option{
		"WithBackoff(nil)":         retry.WithBackoff(nil),
		"WithNotRetryable(nil)":    retry.WithNotRetryable(nil),
		"WithRedeliver(nil)":       retry.WithRedeliver(nil),
		"WithDeadLetter(nil)":      retry.WithDeadLetter(nil),
		"WithDeadLetterTopic(nil)": retry.WithDeadLetterTopic(nil),
		"OnRetry(nil)":             retry.OnRetry(nil),
		"OnDeadLetter(nil)":        retry.OnDeadLetter(nil),
	} {
		noPanic(t, name, func() {
			if _, err := retry.New(o); !errors.Is(err, message.ErrInvalidConfig) {
				t.Errorf("New(%s) = %v, want ErrInvalidConfig", name, err)
			}
		})
	}
	mw, err := retry.New(retry.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	noPanic(t, "mw(nil handler)", func() {
		h := mw(nil)
		if h != nil {
			noPanic(t, "nil handler call", func() { _ = h(ctx, &message.Message{}) })
		}
	})
	noPanic(t, "handler(nil message)", func() {
		h := mw(func(context.Context, *message.Message) error { return errors.New("x") })
		_ = h(ctx, nil)
	})
	noPanic(t, "Replay(nil, nil)", func() {
		if _, err := retry.Replay(ctx, nil, nil, "t.DLT"); err == nil {
			t.Error("Replay(nil sub, nil pub) = nil error")
		}
	})
	var sub *inmem.Subscriber
	var pub *inmem.Publisher
	noPanic(t, "Replay(typed nil)", func() {
		if _, err := retry.Replay(ctx, sub, pub, "t.DLT"); err == nil {
			t.Error("Replay(typed nil sub, pub) = nil error")
		}
	})
	noPanic(t, "Replay(nil option)", func() {
		b, _ := inmem.NewBroker()
		defer b.Close()
		s, _ := inmem.NewSubscriber(b)
		p, _ := inmem.NewPublisher(b)
		if _, err := retry.Replay(ctx, s, p, "t.DLT", retry.ReplayOption{}); !errors.Is(err, message.ErrInvalidConfig) {
			t.Errorf("Replay(zero ReplayOption) = %v, want ErrInvalidConfig", err)
		}
	})
}
