package messagetest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/ferrymsg/ferry/message"
)

// subscribeNow calls Subscribe in the test goroutine with a context that
// ends after the suite's timeout, for calls that must return at once.
func (e *Env) subscribeNow(sub message.Subscriber, topic string, h message.Handler) error {
	return sub.Subscribe(e.Context(), topic, h)
}

func nopHandler(context.Context, *message.Message) error { return nil }

// waitRunning publishes one message and waits until it was handled, which
// shows the subscription is running.
func (e *Env) waitRunning(pub message.Publisher, topic string, c *Collector) {
	e.t.Helper()
	m := newMessages(1, "ping", nil)
	e.Publish(pub, topic, m...)
	c.WaitAll(e, "a message showing the subscription runs", ids(m))
}

func (s *suite) testCancelIdle(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	c := NewCollector()
	run := e.subscribe(e.Subscriber(e.Config(group, 1)), topic, c.handler(0))
	e.waitRunning(pub, topic, c)
	// Nothing left to handle: the subscription is idle.
	e.stop(run)
}

func (s *suite) testCloseIdempotent(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	sub := e.Subscriber(e.Config(group, 1))
	c := NewCollector()
	run := e.subscribe(sub, topic, c.handler(0))
	e.waitRunning(pub, topic, c)
	e.stop(run)
	for i := 1; i <= 2; i++ {
		if err := pub.Close(); err != nil {
			t.Errorf("Publisher.Close call %d returned %v, want nil", i, err)
		}
		if err := sub.Close(); err != nil {
			t.Errorf("Subscriber.Close call %d returned %v, want nil", i, err)
		}
	}
}

func (s *suite) testUseAfterClose(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	sub := e.Subscriber(e.Config(group, 1))
	if err := pub.Close(); err != nil {
		t.Fatalf("Publisher.Close: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("Subscriber.Close: %v", err)
	}
	err := pub.Publish(e.Context(), topic, &message.Message{Payload: []byte("after close")})
	e.isErr("Publish after Close", err, message.ErrClosed)
	err = e.subscribeNow(sub, topic, nopHandler)
	e.isErr("Subscribe after Close", err, message.ErrClosed)
}

func (s *suite) testCloseUnblocksSubscribe(t *testing.T) {
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	sub := e.Subscriber(e.Config(group, 1))
	c := NewCollector()
	run := e.subscribe(sub, topic, c.handler(0))
	e.waitRunning(pub, topic, c)
	run.setStopping()
	if err := sub.Close(); err != nil {
		t.Errorf("Subscriber.Close: %v", err)
	}
	err := e.wait(run, "Close")
	e.isErr("Subscribe running when Close was called", err, message.ErrClosed)
}

func (s *suite) testBadInput(t *testing.T) {
	t.Run("empty topic", func(t *testing.T) {
		e := s.env(t)
		pub := e.Publisher()
		err := pub.Publish(e.Context(), "", &message.Message{Payload: []byte("x")})
		e.isErr(`Publish to ""`, err, message.ErrInvalidTopic)
		sub := e.Subscriber(e.Config(e.Group("g"), 1))
		err = e.subscribeNow(sub, "", nopHandler)
		e.isErr(`Subscribe to ""`, err, message.ErrInvalidTopic)
	})

	t.Run("nil message in a batch publishes none of the batch", func(t *testing.T) {
		e := s.env(t)
		topic, group := e.Topic(), e.Group("g")
		e.Prepare(topic, group)
		pub := e.Publisher()
		// Same key throughout: had the valid messages of the rejected
		// batch been published, they would arrive before the marker.
		a := &message.Message{ID: message.NewID(), Key: "k", Payload: []byte("valid before nil")}
		b := &message.Message{ID: message.NewID(), Key: "k", Payload: []byte("valid after nil")}
		err := pub.Publish(e.Context(), topic, a, nil, b)
		e.isErr("Publish of a batch with a nil message", err, message.ErrInvalidMessage)

		marker := &message.Message{ID: message.NewID(), Key: "k", Payload: []byte("marker")}
		e.Publish(pub, topic, marker)
		c := NewCollector()
		run := e.subscribe(e.Subscriber(e.Config(group, 1)), topic, c.handler(0))
		c.WaitAll(e, "marker published after the rejected batch", []string{marker.ID})
		e.stop(run)
		for _, m := range []*message.Message{a, b} {
			if m.ID != "" && len(c.get(m.ID)) > 0 {
				t.Errorf("message %q of a batch rejected for a nil message was published, want nothing of the batch published", m.Payload)
			}
		}
		c.checkOnly(e, "after a rejected batch", []string{marker.ID})
	})

	t.Run("nil handler", func(t *testing.T) {
		e := s.env(t)
		topic, group := e.Topic(), e.Group("g")
		e.Prepare(topic, group)
		sub := e.Subscriber(e.Config(group, 1))
		err := e.subscribeNow(sub, topic, nil)
		e.isErr("Subscribe with a nil handler", err, message.ErrNilHandler)
	})

	for _, name := range s.h.Features.InvalidTopics {
		t.Run("invalid topic "+describeTopic(name), func(t *testing.T) {
			e := s.env(t)
			pub := e.Publisher()
			err := pub.Publish(e.Context(), name, &message.Message{Payload: []byte("x")})
			e.isErr(fmt.Sprintf("Publish to %q", name), err, message.ErrInvalidTopic)
			checkNames(t, err, name)
			sub := e.Subscriber(e.Config(e.Group("g"), 1))
			err = e.subscribeNow(sub, name, nopHandler)
			e.isErr(fmt.Sprintf("Subscribe to %q", name), err, message.ErrInvalidTopic)
			checkNames(t, err, name)
		})
	}
}

// describeTopic names a topic in a subtest name, shortening long ones.
func describeTopic(name string) string {
	if q := strconv.Quote(name); len(q) <= 42 {
		return q
	}
	return fmt.Sprintf("of %d bytes starting %.16q", len(name), name)
}

// checkNames checks that err names the rejected topic, as it is or quoted.
// Names over 100 bytes are exempt: an error may describe them instead (by
// their length, say).
func checkNames(t *testing.T, err error, name string) {
	t.Helper()
	if err == nil || len(name) > 100 {
		return
	}
	if msg := err.Error(); !strings.Contains(msg, name) && !strings.Contains(msg, strconv.Quote(name)) {
		t.Errorf("error %q does not name the rejected topic %q", msg, name)
	}
}

func (s *suite) testNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	e := s.env(t)
	topic, group := e.Topic(), e.Group("g")
	e.Prepare(topic, group)
	pub := e.Publisher()
	sub := e.Subscriber(e.Config(group, 4))

	// Exercise publishing, consuming and a redelivery (backoff timers).
	msgs := keyedMessages([]string{"a", "b"}, 5)
	e.Publish(pub, topic, msgs...)
	l := newKeyedLog(s.h.Features.NoKeyOrder)
	run := e.subscribe(sub, topic, l.handler(func(key string, seq, attempt int) error {
		if key == "a" && seq == 1 && attempt == 1 {
			return errTestFailure
		}
		return nil
	}))
	l.waitSettled(e, "every message settled", msgs)
	e.stop(run)
	if err := pub.Close(); err != nil {
		t.Errorf("Publisher.Close: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("Subscriber.Close: %v", err)
	}
	goleak.VerifyNone(t, ignore)
}
